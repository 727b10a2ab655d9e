#include "portico/http/head_text.hpp"

#include <string_view>

namespace portico::http {
namespace {

void append_version(std::string& out, unsigned version)
{
    const char text[] = {'H', 'T', 'T', 'P', '/', static_cast<char>('0' + version / 10 % 10), '.',
                         static_cast<char>('0' + version % 10)};
    out.append(text, sizeof(text));
}

void append_fields(std::string& out, const fields& f)
{
    for (const auto& line : f) {
        append_field(out, line.name_string(), line.value());
    }
    out += "\r\n";
}

} // namespace

void append_field(std::string& out, std::string_view name, std::string_view value)
{
    out.append(name);
    out += ": ";
    out.append(value);
    out += "\r\n";
}

void append_head(std::string& out, const request_head& req)
{
    const auto method = req.method_string();
    const auto target = req.target();
    out.append(method.data(), method.size());
    out += ' ';
    out.append(target.data(), target.size());
    out += ' ';
    append_version(out, req.version());
    out += "\r\n";
    append_fields(out, req);
}

void append_status_line(std::string& out, unsigned version, unsigned code,
                        std::string_view reason)
{
    // One append for "HTTP/x.y nnn ": each append checks capacity and calls memcpy.
    const char start[] = {'H',
                          'T',
                          'T',
                          'P',
                          '/',
                          static_cast<char>('0' + version / 10 % 10),
                          '.',
                          static_cast<char>('0' + version % 10),
                          ' ',
                          static_cast<char>('0' + code / 100 % 10),
                          static_cast<char>('0' + code / 10 % 10),
                          static_cast<char>('0' + code % 10),
                          ' '};
    out.append(start, sizeof(start));
    out.append(reason.data(), reason.size());
    out += "\r\n";
}

void append_head(std::string& out, const response_head& res)
{
    const auto reason = res.reason();
    append_status_line(out, res.version(), res.result_int(),
                       std::string_view(reason.data(), reason.size()));
    append_fields(out, res);
}

} // namespace portico::http
