#include "portico/core/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

namespace portico::utf8 {
namespace {

TEST(Utf8Test, WellFormedTextIsValid)
{
    EXPECT_TRUE(is_valid(""));
    EXPECT_TRUE(is_valid("/api/users?q=1"));
    EXPECT_TRUE(is_valid("caf\xC3\xA9"));             // é
    EXPECT_TRUE(is_valid("\xE2\x82\xAC"));            // €
    EXPECT_TRUE(is_valid("\xED\x9F\xBF"));            // U+D7FF, just below the surrogates
    EXPECT_TRUE(is_valid("\xF0\x9F\x98\x80"));        // U+1F600
    EXPECT_TRUE(is_valid("\xF4\x8F\xBF\xBF"));        // U+10FFFF
}

TEST(Utf8Test, MalformedSequencesAreInvalid)
{
    EXPECT_FALSE(is_valid("\xFF"));
    EXPECT_FALSE(is_valid("\x80"));               // a continuation byte alone
    EXPECT_FALSE(is_valid("\xC0\xAF"));           // overlong '/'
    EXPECT_FALSE(is_valid("\xE0\x80\xAF"));       // overlong '/'
    EXPECT_FALSE(is_valid("\xED\xA0\x80"));       // a surrogate
    EXPECT_FALSE(is_valid("\xF4\x90\x80\x80"));   // above U+10FFFF
    EXPECT_FALSE(is_valid("\xF5\x80\x80\x80"));
    EXPECT_FALSE(is_valid("caf\xC3"));            // cut short at the end
    EXPECT_FALSE(is_valid("\xE2\x82x"));          // cut short before ASCII
}

TEST(Utf8Test, EachByteStartingNoSequenceBecomesOneReplacementCharacter)
{
    std::string out = "x=";
    append_valid(out, "/\xFF\xFE" "caf\xC3\xA9/\xC3");
    EXPECT_EQ(out, "x=/\xEF\xBF\xBD\xEF\xBF\xBD" "caf\xC3\xA9/\xEF\xBF\xBD");
    EXPECT_TRUE(is_valid(out));

    std::string s = "ev\xFFil";
    make_valid(s);
    EXPECT_EQ(s, "ev\xEF\xBF\xBDil");
    std::string fine = "caf\xC3\xA9";
    make_valid(fine);
    EXPECT_EQ(fine, "caf\xC3\xA9");
}

} // namespace
} // namespace portico::utf8
