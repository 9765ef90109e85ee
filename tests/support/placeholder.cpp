// placeholder so the support library exists before it is written.
namespace mxp::test {}
