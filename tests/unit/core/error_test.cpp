#include "portico/core/error.hpp"

#include <gtest/gtest.h>

#include <boost/system/errc.hpp>

#include <set>
#include <string>
#include <string_view>
#include <utility>

namespace portico {
namespace {

// Every condition with the name that SPEC.md and X-Portico-Error rely on.
constexpr std::pair<errc, std::string_view> all_conditions[] = {
    {errc::no_route, "no_route"},
    {errc::upstream_refused, "upstream_refused"},
    {errc::upstream_connect_timeout, "upstream_connect_timeout"},
    {errc::upstream_timeout, "upstream_timeout"},
    {errc::upstream_tls, "upstream_tls"},
    {errc::upstream_protocol, "upstream_protocol"},
    {errc::bad_request, "bad_request"},
    {errc::header_too_large, "header_too_large"},
    {errc::body_too_large, "body_too_large"},
    {errc::header_timeout, "header_timeout"},
    {errc::tls_required, "tls_required"},
    {errc::forbidden_origin, "forbidden_origin"},
    {errc::tls_handshake_failed, "tls_handshake_failed"},
};

TEST(ErrorTest, CategoryIsNamedPortico)
{
    EXPECT_STREQ(error_category().name(), "portico");
    EXPECT_EQ(&error_category(), &error_category());
}

TEST(ErrorTest, EveryConditionHasItsStableName)
{
    for (const auto& [e, name] : all_conditions) {
        EXPECT_EQ(to_string(e), name);
    }
}

TEST(ErrorTest, EveryConditionHasItsOwnMessage)
{
    std::set<std::string> messages;
    for (const auto& [e, name] : all_conditions) {
        const auto message = error_category().message(static_cast<int>(e));
        EXPECT_FALSE(message.empty()) << name;
        EXPECT_NE(message, "unknown portico error") << name;
        messages.insert(message);
    }
    EXPECT_EQ(messages.size(), std::size(all_conditions));
}

TEST(ErrorTest, MakeErrorCodeRoundTrips)
{
    for (const auto& [e, name] : all_conditions) {
        const auto ec = make_error_code(e);
        EXPECT_TRUE(ec.failed()) << name;
        EXPECT_EQ(ec.value(), static_cast<int>(e)) << name;
        EXPECT_EQ(&ec.category(), &error_category()) << name;
        EXPECT_EQ(ec, e) << name;
        EXPECT_EQ(to_string(static_cast<errc>(ec.value())), name);
        EXPECT_EQ(ec.message(), error_category().message(ec.value())) << name;
    }
}

TEST(ErrorTest, EnumConvertsImplicitlyToErrorCode)
{
    const boost::system::error_code ec = errc::upstream_timeout;
    EXPECT_EQ(ec, make_error_code(errc::upstream_timeout));
    EXPECT_NE(ec, make_error_code(errc::upstream_refused));
}

TEST(ErrorTest, DiffersFromOtherCategoriesWithTheSameValue)
{
    const auto ours = make_error_code(errc::no_route);
    const auto generic = boost::system::errc::make_error_code(
        static_cast<boost::system::errc::errc_t>(static_cast<int>(errc::no_route)));
    EXPECT_EQ(ours.value(), generic.value());
    EXPECT_NE(ours, generic);
}

TEST(ErrorTest, UnknownValuesHaveFallbackNames)
{
    EXPECT_EQ(to_string(static_cast<errc>(0)), "unknown");
    EXPECT_EQ(to_string(static_cast<errc>(999)), "unknown");
    EXPECT_EQ(error_category().message(0), "unknown portico error");
    EXPECT_EQ(error_category().message(999), "unknown portico error");
}

} // namespace
} // namespace portico
