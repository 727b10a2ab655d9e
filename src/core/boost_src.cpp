// The one translation unit that compiles Asio, Beast and Boost.JSON; every other file sees
// only their declarations (BOOST_*_SEPARATE_COMPILATION is a public definition of core).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/json/src.hpp>
