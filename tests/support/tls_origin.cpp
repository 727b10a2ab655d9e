#include "support/origin.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>

namespace portico::test {

struct tls_origin::impl {
    impl(const std::filesystem::path& cert, const std::filesystem::path& key, options opts)
        : context(net::ssl::context::tls_server),
          acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0))
    {
        context.use_certificate_chain_file(cert.string());
        context.use_private_key_file(key.string(), net::ssl::context::pem);
        if (opts.require_client_certificate) {
            context.set_verify_mode(net::ssl::verify_peer | net::ssl::verify_fail_if_no_peer_cert);
        }
        if (opts.tls12_only) {
            context.set_options(net::ssl::context::no_tlsv1_3);
        }
        thread = std::thread([this] { accept_loop(); });
    }

    ~impl()
    {
        stopping = true;
        // As in ~origin: wake the accept, and close once its thread has left it.
        ::shutdown(acceptor.native_handle(), SHUT_RDWR);
        thread.join();
        boost::system::error_code ec;
        acceptor.close(ec);
        std::vector<std::thread> done;
        {
            std::lock_guard lock(mutex);
            for (int fd : fds) {
                ::shutdown(fd, SHUT_RDWR);
            }
            done.swap(workers);
        }
        for (auto& t : done) {
            t.join();
        }
    }

    void accept_loop()
    {
        while (!stopping) {
            auto socket = std::make_shared<tcp::socket>(io);
            boost::system::error_code ec;
            acceptor.accept(*socket, ec);
            if (ec || stopping) {
                return;
            }
            bound_socket_waits(socket->native_handle(), std::chrono::seconds(10));
            std::lock_guard lock(mutex);
            fds.push_back(socket->native_handle());
            workers.emplace_back([this, socket] { serve(std::move(*socket)); });
        }
    }

    void serve(tcp::socket socket)
    {
        net::ssl::stream<bounded_stream> stream(socket, context);
        boost::system::error_code ec;
        stream.handshake(net::ssl::stream_base::server, ec);
        beast::flat_buffer buffer;
        while (!ec) {
            request req;
            beast::http::read(stream, buffer, req, ec);
            if (ec) {
                return;
            }
            response res{beast::http::status::ok, 11};
            res.body() = "tls-backend " + std::string(req.method_string()) + " " +
                         std::string(req.target());
            res.prepare_payload();
            if (req.target() == "/then-unasked") {
                // A second response in a record of its own, corked into the same segment so
                // that the proxy's one read takes both off the socket.
                const int on = 1;
                const int off = 0;
                ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_CORK, &on, sizeof on);
                beast::http::write(stream, res, ec);
                net::write(stream, net::buffer(std::string_view(
                                       "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nFORGED")),
                           ec);
                ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_CORK, &off, sizeof off);
                continue;
            }
            beast::http::write(stream, res, ec);
        }
    }

    net::io_context io;
    net::ssl::context context;
    tcp::acceptor acceptor;
    std::atomic<bool> stopping{false};
    std::thread thread;
    std::mutex mutex;
    std::vector<std::thread> workers;
    std::vector<int> fds;
};

tls_origin::tls_origin(const std::filesystem::path& cert, const std::filesystem::path& key,
                       options opts)
    : impl_(std::make_unique<impl>(cert, key, opts)),
      port_(impl_->acceptor.local_endpoint().port())
{
}

tls_origin::~tls_origin() = default;

bool make_self_signed(const std::filesystem::path& cert, const std::filesystem::path& key,
                      const std::string& dns_name, const std::string& common_name,
                      std::string& error)
{
    auto r = run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                          "/CN=" + common_name, "-addext", "subjectAltName=DNS:" + dns_name,
                          "-keyout", key.string(), "-out", cert.string()});
    error = r.err;
    return r.exit_code == 0;
}

} // namespace portico::test
