#include "portico/core/log.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <string>

namespace portico::log {
namespace {

using namespace std::chrono_literals;

// 2026-11-26T08:00:00.123Z
std::chrono::system_clock::time_point fixed_time()
{
    const std::chrono::sys_days day{std::chrono::year{2026} / std::chrono::November / 26};
    return day + 8h + 123ms;
}

access_record sample_record()
{
    access_record r;
    r.time = fixed_time();
    r.client = "127.0.0.1:51000";
    r.host = "app.localhost:7080";
    r.method = "GET";
    r.target = "/api/users?q=1";
    r.proto = "HTTP/1.1";
    r.status = 200;
    r.bytes = 1234;
    r.duration_ms = 12.34;
    r.route = "app.localhost/api";
    r.backend = "127.0.0.1:8000";
    return r;
}

// Restores the process-wide log settings each test may change.
class LogTest : public testing::Test {
protected:
    void TearDown() override { configure(level::info, format::text); }
};

// --- Parsing options -------------------------------------------------------------------

TEST(LogOptionsTest, ParseLevelAcceptsTheDocumentedWords)
{
    EXPECT_EQ(parse_level("debug"), level::debug);
    EXPECT_EQ(parse_level("info"), level::info);
    EXPECT_EQ(parse_level("warn"), level::warn);
    EXPECT_EQ(parse_level("error"), level::error);
    for (const std::string_view text : {"", "off", "INFO", "warning", "info "}) {
        EXPECT_EQ(parse_level(text), std::nullopt) << text;
    }
}

TEST(LogOptionsTest, ParseFormatAcceptsTextAndJson)
{
    EXPECT_EQ(parse_format("text"), format::text);
    EXPECT_EQ(parse_format("json"), format::json);
    for (const std::string_view text : {"", "JSON", "yaml", "text\n"}) {
        EXPECT_EQ(parse_format(text), std::nullopt) << text;
    }
}

// --- Time ------------------------------------------------------------------------------

TEST(LogTimeTest, FormatsRfc3339UtcWithMilliseconds)
{
    EXPECT_EQ(format_time(fixed_time()), "2026-11-26T08:00:00.123Z");
    EXPECT_EQ(format_time(std::chrono::system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
    const std::chrono::sys_days leap{std::chrono::year{2024} / std::chrono::February / 29};
    EXPECT_EQ(format_time(leap + 23h + 59min + 59s + 999ms + 999us), "2024-02-29T23:59:59.999Z");
}

// --- Access lines ----------------------------------------------------------------------

TEST(AccessLogTest, TextLineHasTheDocumentedLayout)
{
    EXPECT_EQ(format_access_text(sample_record()),
              "2026-11-26T08:00:00.123Z 127.0.0.1:51000 app.localhost:7080 "
              "\"GET /api/users?q=1 HTTP/1.1\" 200 1234 12.3ms -> 127.0.0.1:8000");
}

TEST(AccessLogTest, TextLineShowsDashesForMissingHostAndBackend)
{
    auto r = sample_record();
    r.host = "";
    r.backend = "";
    r.route = "";
    r.status = 404;
    r.bytes = 0;
    r.duration_ms = 0.04;
    EXPECT_EQ(format_access_text(r), "2026-11-26T08:00:00.123Z 127.0.0.1:51000 - "
                                     "\"GET /api/users?q=1 HTTP/1.1\" 404 0 0.0ms -> -");
}

TEST(AccessLogTest, TextLineEscapesWhatTheClientChose)
{
    // A Host with a blank and a quote must not forge further columns of the line.
    auto r = sample_record();
    r.host = "evil\" 200 1 0.0ms -> x \xc3\xa9";
    EXPECT_EQ(format_access_text(r),
              "2026-11-26T08:00:00.123Z 127.0.0.1:51000 evil\\x22\\x20200\\x201\\x200.0ms\\x20->"
              "\\x20x\\x20\\xC3\\xA9 \"GET /api/users?q=1 HTTP/1.1\" 200 1234 12.3ms -> 127.0.0.1:8000");
}

TEST(AccessLogTest, JsonLineHasTheDocumentedFields)
{
    EXPECT_EQ(format_access_json(sample_record()),
              R"({"time":"2026-11-26T08:00:00.123Z","client":"127.0.0.1:51000",)"
              R"("host":"app.localhost:7080","method":"GET","target":"/api/users?q=1",)"
              R"("proto":"HTTP/1.1","status":200,"bytes":1234,"duration_ms":12.340,)"
              R"("route":"app.localhost/api","backend":"127.0.0.1:8000"})");
}

TEST(AccessLogTest, JsonLineHasNullRouteAndBackendWhenNoneWasReached)
{
    auto r = sample_record();
    r.route = "";
    r.backend = "";
    const auto v = boost::json::parse(format_access_json(r));
    EXPECT_TRUE(v.at("route").is_null());
    EXPECT_TRUE(v.at("backend").is_null());
    EXPECT_EQ(v.at("status").to_number<int>(), 200);
}

TEST(AccessLogTest, JsonLineEscapesHostileStrings)
{
    auto r = sample_record();
    r.host = "evil\"\n{\"status\":500}\\";
    r.target = "/\x01\t";
    r.method = "G\"ET";
    const auto line = format_access_json(r);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    EXPECT_NE(line.find(R"("host":"evil\"\n{\"status\":500}\\")"), std::string::npos) << line;
    const auto v = boost::json::parse(line);
    EXPECT_EQ(v.at("host").as_string(), "evil\"\n{\"status\":500}\\");
    EXPECT_EQ(v.at("target").as_string(), "/\x01\t");
    EXPECT_EQ(v.at("method").as_string(), "G\"ET");
    EXPECT_EQ(v.at("status").to_number<int>(), 200);
}

TEST(AccessLogTest, JsonLineIsUtf8WhateverBytesTheClientSent)
{
    // JSON is UTF-8: bytes that are not become U+FFFD, and the line still parses.
    auto r = sample_record();
    r.host = "ev\xFFil.localhost";
    r.target = "/\xFF\xFE<script>";
    const auto v = boost::json::parse(format_access_json(r));
    EXPECT_EQ(v.at("host").as_string(), "ev\xEF\xBF\xBDil.localhost");
    EXPECT_EQ(v.at("target").as_string(), "/\xEF\xBF\xBD\xEF\xBF\xBD<script>");
}

// --- Facade ----------------------------------------------------------------------------

TEST_F(LogTest, ThresholdFiltersLowerLevels)
{
    configure(level::warn, format::text);
    EXPECT_FALSE(enabled(level::debug));
    EXPECT_FALSE(enabled(level::info));
    EXPECT_TRUE(enabled(level::warn));
    EXPECT_TRUE(enabled(level::error));
    configure(level::off, format::json);
    EXPECT_FALSE(enabled(level::error));
    EXPECT_EQ(current_format(), format::json);
}

TEST_F(LogTest, FilteredMacroDoesNotEvaluateFields)
{
    configure(level::info, format::text);
    int evaluated = 0;
    const auto count = [&evaluated] { return ++evaluated; };
    testing::internal::CaptureStderr();
    PORTICO_LOG(level::debug, "skipped", {"n", count()});
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
    EXPECT_EQ(evaluated, 0);
}

TEST_F(LogTest, TextEventLineHasTimeLevelEventAndFields)
{
    configure(level::debug, format::text);
    testing::internal::CaptureStderr();
    PORTICO_LOG(level::warn, "upstream_refused", {"conn", 7}, {"route", "app.localhost"},
                {"msg", "not listening"}, {"ok", false}, {"empty", ""});
    const auto out = testing::internal::GetCapturedStderr();
    const std::regex line(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warn upstream_refused )"
                          R"(conn=7 route=app\.localhost msg="not listening" ok=false empty=""\n)");
    EXPECT_TRUE(std::regex_match(out, line)) << out;
}

TEST_F(LogTest, TextEventLineQuotesValuesThatWouldSplitIt)
{
    configure(level::info, format::text);
    testing::internal::CaptureStderr();
    PORTICO_LOG(level::info, "event", {"host", "a\nb=c \"d\""});
    const auto out = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(out.ends_with(" info event host=\"a\\nb=c \\\"d\\\"\"\n")) << out;
}

TEST_F(LogTest, JsonEventLineIsOneObject)
{
    configure(level::info, format::json);
    testing::internal::CaptureStderr();
    PORTICO_LOG(level::error, "crash", {"conn", 3U}, {"what", "bad\n\"thing\""}, {"ratio", 0.5});
    const auto out = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(out.ends_with("}\n")) << out;
    EXPECT_EQ(out.find('\n'), out.size() - 1);
    const auto v = boost::json::parse(out);
    EXPECT_EQ(v.at("level").as_string(), "error");
    EXPECT_EQ(v.at("event").as_string(), "crash");
    EXPECT_EQ(v.at("conn").to_number<int>(), 3);
    EXPECT_EQ(v.at("what").as_string(), "bad\n\"thing\"");
    EXPECT_EQ(v.at("ratio").to_number<double>(), 0.5);
    EXPECT_TRUE(v.at("time").is_string());
}

TEST_F(LogTest, NoticePrintsMessageInTextAndFieldsInJson)
{
    configure(level::info, format::text);
    testing::internal::CaptureStderr();
    notice("ready", "portico ready: http on 127.0.0.1:7080 (1 route)", {{"routes", 1}});
    EXPECT_EQ(testing::internal::GetCapturedStderr(),
              "portico ready: http on 127.0.0.1:7080 (1 route)\n");

    configure(level::info, format::json);
    testing::internal::CaptureStderr();
    notice("ready", "portico ready", {{"listen", "127.0.0.1:7080"}, {"routes", 3}});
    const auto v = boost::json::parse(testing::internal::GetCapturedStderr());
    EXPECT_EQ(v.at("event").as_string(), "ready");
    EXPECT_EQ(v.at("listen").as_string(), "127.0.0.1:7080");
    EXPECT_EQ(v.at("routes").to_number<int>(), 3);
}

TEST_F(LogTest, AnnounceIsWrittenWhereNoticeIsFilteredOut)
{
    configure(level::warn, format::text);
    testing::internal::CaptureStderr();
    notice("config", "config: portico.yaml (1 route)", {});
    announce("ready", "portico ready: http on 127.0.0.1:7080 (1 route)", {{"routes", 1}});
    EXPECT_EQ(testing::internal::GetCapturedStderr(),
              "portico ready: http on 127.0.0.1:7080 (1 route)\n");
}

TEST_F(LogTest, AccessWritesTheConfiguredFormatAtInfo)
{
    configure(level::info, format::text);
    testing::internal::CaptureStderr();
    access(sample_record());
    EXPECT_EQ(testing::internal::GetCapturedStderr(), format_access_text(sample_record()) + "\n");

    configure(level::info, format::json);
    testing::internal::CaptureStderr();
    access(sample_record());
    EXPECT_EQ(testing::internal::GetCapturedStderr(), format_access_json(sample_record()) + "\n");

    configure(level::warn, format::text);
    testing::internal::CaptureStderr();
    access(sample_record());
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

} // namespace
} // namespace portico::log
