#include "portico/tls/certificates.hpp"

#include "tls/files.hpp"
#include "unit/tls/tls_test_support.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace portico::tls {
namespace {

using testing::list_dir;
using testing::mode_of;
using testing::slurp;
using testing::temp_dir;

TEST(TlsFilesTest, WriteAtomicallyWritesContentWithMode)
{
    const temp_dir dir;
    const auto path = dir / "key.pem";
    EXPECT_EQ(write_file_atomically(path, "secret\n", 0600), "");
    EXPECT_EQ(slurp(path), "secret\n");
    EXPECT_EQ(mode_of(path), 0600u);
    EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"key.pem"});
}

TEST(TlsFilesTest, WriteAtomicallyReplacesExistingFileAndItsMode)
{
    const temp_dir dir;
    const auto path = dir / "cert.pem";
    ASSERT_EQ(write_file_atomically(path, "old", 0644), "");
    EXPECT_EQ(write_file_atomically(path, "new content", 0600), "");
    EXPECT_EQ(slurp(path), "new content");
    EXPECT_EQ(mode_of(path), 0600u);
    EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"cert.pem"});
}

TEST(TlsFilesTest, WriteAtomicallyFailedRenameLeavesNoTemporaryFile)
{
    const temp_dir dir;
    // The target is a non-empty directory: everything succeeds up to the rename.
    std::filesystem::create_directory(dir / "busy");
    testing::spit(dir / "busy" / "inside", "x");
    const std::string error = write_file_atomically(dir / "busy", "data", 0600);
    EXPECT_NE(error.find("busy"), std::string::npos) << error;
    EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"busy"});
}

TEST(TlsFilesTest, WriteAtomicallyMissingDirectoryIsAnError)
{
    const temp_dir dir;
    const std::string error = write_file_atomically(dir / "absent" / "f.pem", "data", 0600);
    EXPECT_FALSE(error.empty());
    EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(TlsFilesTest, PrivateDirectoryCreatesParentsAndMode0700)
{
    const temp_dir dir;
    const auto path = dir / "a/b/ca";
    EXPECT_EQ(make_private_directory(path), "");
    EXPECT_EQ(mode_of(path), 0700u);
}

TEST(TlsFilesTest, PrivateDirectoryTightensOwnLooseDirectory)
{
    const temp_dir dir;
    const auto path = dir / "ca";
    std::filesystem::create_directory(path);
    std::filesystem::permissions(path, std::filesystem::perms::owner_all |
                                           std::filesystem::perms::group_read |
                                           std::filesystem::perms::others_exec);
    EXPECT_EQ(make_private_directory(path), "");
    EXPECT_EQ(mode_of(path), 0700u);
}

TEST(TlsFilesTest, PrivateDirectoryFileInTheWayIsAnError)
{
    const temp_dir dir;
    testing::spit(dir / "ca", "not a directory");
    EXPECT_NE(make_private_directory(dir / "ca").find("not a directory"), std::string::npos);
}

} // namespace
} // namespace portico::tls
