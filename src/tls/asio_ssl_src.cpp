// The one translation unit that compiles Asio's SSL support (BOOST_ASIO_SEPARATE_COMPILATION
// is a public definition of portico_core); everything else sees only its declarations.
#include <boost/asio/ssl/impl/src.hpp>
