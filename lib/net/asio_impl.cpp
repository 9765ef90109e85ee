// The one translation unit that compiles Boost.Asio, Asio's SSL support and
// Boost.Beast (BOOST_*_SEPARATE_COMPILATION): every other file includes only headers.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
