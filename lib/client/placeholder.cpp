// placeholder so the client library exists before it is written.
namespace mxp::client {}
