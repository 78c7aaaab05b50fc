// Golden fixtures: reproducible bytes, no drift of the oracle, tamper and malformed-
// file detection, and the `lla` command's exit codes.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "lla/fixtures/h5.hpp"
#include "lla/fixtures/schema.hpp"
#include "lla/fixtures/suites.hpp"
#include "lla/fixtures/verify.hpp"
#include "lla/metrics.hpp"
#include "support/cli.hpp"

namespace lla::fixtures {
namespace {

using test::CommandResult;
using test::run_lla;
using test::TempDir;

namespace fs = std::filesystem;

const fs::path kGolden = fs::path(LLA_SOURCE_DIR) / "fixtures" / "golden";

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

TEST(GoldenFixtures, ManifestListsEveryFileAndMatches) {
  const auto files = check_manifest(kGolden.string());
  EXPECT_EQ(files.size(), suite("golden").size());
  uint64_t bytes = 0;
  for (const auto& f : files) bytes += fs::file_size(kGolden / f);
  EXPECT_LT(bytes, 10u << 20) << "the committed golden suite must stay under 10 MB";
}

// Regenerating the golden suite (with the commit the files record) gives the
// same bytes: the oracle, the generator and the writer are deterministic.
TEST(GoldenFixtures, RegeneratingGivesIdenticalBytes) {
  const auto first = read_fixture((kGolden / check_manifest(kGolden.string()).front()).string());
  TempDir tmp;
  const auto r = run_lla("fixtures generate --suite golden --out '" + tmp.path().string() + "' --commit " +
                         first.git_commit);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_bytes(tmp.path() / kManifestName), read_bytes(kGolden / kManifestName))
      << "regenerate with tools/regen-golden.sh if the oracle changed on purpose";
}

// The current oracle reproduces every committed tensor (drift test): exactly up
// to 1e-12 relative, and `lla verify` accepts the oracle as a candidate.
TEST(GoldenFixtures, OracleHasNotDrifted) {
  for (const auto& f : check_manifest(kGolden.string())) {
    const auto fx = read_fixture((kGolden / f).string());
    const auto now = oracle_expected(fx.spec, fx.inputs, fx.dout);
    ASSERT_EQ(now.size(), fx.expected.size());
    for (size_t i = 0; i < now.size(); ++i) {
      double diff = 0, scale = 0;
      for (size_t e = 0; e < now[i].values.size(); ++e) {
        const double a = now[i].values[e], b = fx.expected[i].values[e];
        if (std::isfinite(a) && std::isfinite(b)) {
          diff = std::max(diff, std::fabs(a - b));
          scale = std::max(scale, std::fabs(b));
        } else {
          EXPECT_EQ(a, b) << f << " " << now[i].name << " element " << e;
        }
      }
      EXPECT_LE(diff, 1e-12 * std::max(scale, 1.0)) << f << " " << now[i].name;
    }
  }
  TempDir tmp;
  auto r = run_lla("fixtures oracle-candidate --fixtures '" + kGolden.string() + "' --out '" + tmp.path().string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_lla("verify --fixtures '" + kGolden.string() + "' --candidate '" + tmp.path().string() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tensors pass"), std::string::npos);
}

// A candidate that is off by more than the bound fails with exit code 1, and the
// row names the tensor and the worst index.
TEST(GoldenFixtures, VerifyRejectsAWrongCandidate) {
  TempDir tmp;
  const auto files = check_manifest(kGolden.string());
  for (const auto& f : files) {
    const auto fx = read_fixture((kGolden / f).string());
    std::vector<NamedArray> cand;
    for (auto e : fx.expected) {
      if (!is_verified_tensor(e.name)) continue;
      if (e.name == "o" && f == files.front()) {
        for (double& x : e.values) x *= 1.01;  // 1% off: far above any fp32 baseline
      }
      cand.push_back(e);
    }
    write_candidate((tmp.path() / f).string(), cand, false);
  }
  const auto r = run_lla("verify --fixtures '" + kGolden.string() + "' --candidate '" + tmp.path().string() + "'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FAIL"), std::string::npos) << r.output;
  // A missing candidate file is a failed check too (not a crash).
  fs::remove(tmp.path() / files.back());
  const auto r2 = run_lla("verify --fixtures '" + kGolden.string() + "' --candidate '" + tmp.path().string() + "' --json");
  EXPECT_EQ(r2.exit_code, 1);
  EXPECT_NE(r2.output.find("no candidate file"), std::string::npos) << r2.output;
}

// Flipping any one byte of a golden file is caught by the manifest before HDF5
// ever opens the file; flips in tensor data are also caught by Fletcher32.
TEST(GoldenFixtures, FlippedByteIsDetected) {
  TempDir tmp;
  for (const auto& e : fs::directory_iterator(kGolden)) fs::copy(e.path(), tmp.path() / e.path().filename());
  const std::string name = "softmax_causal_l29_d24.h5";
  const std::string original = read_bytes(tmp.path() / name);
  for (size_t at : {size_t{100}, original.size() / 2, original.size() - 10}) {
    std::string bytes = original;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x5A);
    write_bytes(tmp.path() / name, bytes);
    EXPECT_THROW(check_manifest(tmp.path().string()), FixtureError) << "byte " << at;
    const auto r = run_lla("verify --fixtures '" + tmp.path().string() + "' --candidate '" + tmp.path().string() + "'");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("does not match the manifest"), std::string::npos) << r.output;
  }
  write_bytes(tmp.path() / name, original);
  EXPECT_NO_THROW(check_manifest(tmp.path().string()));
  // A file the manifest does not list is refused too.
  fs::copy(tmp.path() / name, tmp.path() / "extra.h5");
  EXPECT_THROW(check_manifest(tmp.path().string()), FixtureError);
}

// Hand-made malformed files: each gives exit code 2 and a message naming the
// problem, never a crash.
class MalformedFixtures : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = (kGolden / "parallax_gqa4to2_lq16_lk48_d32_bf16.h5").string();
  }
  // Copies the valid file, applies `edit` to it through HDF5, and runs `lla inspect`.
  CommandResult inspect_edited(const std::string& label, const std::function<void(hid_t file)>& edit) {
    const auto path = tmp_.path() / (label + ".h5");
    fs::copy_file(source_, path, fs::copy_options::overwrite_existing);
    {
      auto guard = h5::lock();
      h5::Handle file(h5::check(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "open"), H5Fclose);
      edit(file);
    }
    return run_lla("inspect '" + path.string() + "'");
  }
  static void replace_q(hid_t file, hid_t type, std::vector<hsize_t> dims) {
    h5::Handle in = h5::open_group(file, "inputs");
    h5::check(H5Ldelete(in, "q", H5P_DEFAULT), "delete q");
    h5::Handle space(h5::check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "space"),
                     H5Sclose);
    h5::Handle dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "dcpl"), H5Pclose);
    std::vector<hsize_t> chunk(dims.size(), 1);
    h5::check(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), "chunk");
    h5::Handle ds(h5::check(H5Dcreate2(in, "q", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), "create"), H5Dclose);
  }
  TempDir tmp_;
  std::string source_;
};

TEST_F(MalformedFixtures, TruncatedFile) {
  const std::string bytes = read_bytes(source_);
  for (size_t keep : {size_t{0}, size_t{7}, size_t{512}, bytes.size() / 2, bytes.size() - 1}) {
    const auto path = tmp_.path() / ("truncated_" + std::to_string(keep) + ".h5");
    write_bytes(path, bytes.substr(0, keep));
    const auto r = run_lla("inspect '" + path.string() + "'");
    EXPECT_EQ(r.exit_code, 2) << keep << ": " << r.output;
    EXPECT_NE(r.output.find("error"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(path.filename().string()), std::string::npos) << "message must name the file: " << r.output;
  }
}

TEST_F(MalformedFixtures, WrongRank) {
  const auto r = inspect_edited("wrong_rank", [](hid_t f) { replace_q(f, H5T_IEEE_F64LE, {1, 16, 128}); });
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/inputs/q has rank 3, expected 4"), std::string::npos) << r.output;
}

TEST_F(MalformedFixtures, HugeDimensions) {
  const auto r = inspect_edited("huge_dims", [](hid_t f) {
    replace_q(f, H5T_IEEE_F64LE, {1, hsize_t{1} << 40, 4, 32});
  });
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/inputs/q has shape"), std::string::npos) << r.output;
}

TEST_F(MalformedFixtures, WrongElementType) {
  const auto r = inspect_edited("wrong_dtype", [](hid_t f) { replace_q(f, H5T_STD_I32LE, {1, 16, 4, 32}); });
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/inputs/q has element type"), std::string::npos) << r.output;
}

TEST_F(MalformedFixtures, MissingAttribute) {
  const auto r = inspect_edited("missing_attr", [](hid_t f) {
    h5::check(H5Adelete(f, "schema_version"), "delete attribute");
  });
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("missing attribute 'schema_version'"), std::string::npos) << r.output;
}

TEST_F(MalformedFixtures, NewerSchema) {
  const auto r = inspect_edited("newer_schema", [](hid_t f) {
    h5::check(H5Adelete(f, "schema_version"), "delete attribute");
    h5::write_attribute(f, "schema_version", std::string("1.7"));
  });
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("newer than this reader"), std::string::npos) << r.output;
}

TEST_F(MalformedFixtures, SoftLinkAndUnknownObject) {
  auto r = inspect_edited("soft_link", [](hid_t f) {
    h5::check(H5Lcreate_soft("/inputs/q", f, "extra", H5P_DEFAULT, H5P_DEFAULT), "soft link");
  });
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("soft or external link"), std::string::npos) << r.output;
}

TEST_F(MalformedFixtures, InconsistentBitsTwin) {
  const auto r = inspect_edited("bits_twin", [](hid_t f) {
    h5::Handle in = h5::open_group(f, "inputs");
    h5::Handle ds = h5::open_dataset(in, "k");
    std::vector<double> k(1 * 48 * 2 * 32);
    h5::check(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, k.data()), "read");
    k[5] += 1e-3;  // no longer the value of k_bits[5]
    h5::check(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, k.data()), "write");
  });
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/inputs/k_bits disagrees with /inputs/k at element 5"), std::string::npos) << r.output;
}

// A data byte corrupted behind HDF5's back: Fletcher32 refuses the chunk.
TEST_F(MalformedFixtures, CorruptedChecksum) {
  const auto path = tmp_.path() / "corrupted.h5";
  fs::copy_file(source_, path);
  haddr_t offset = 0;
  {
    auto guard = h5::lock();
    h5::Handle file = h5::open_file(path.string());
    h5::Handle in = h5::open_group(file, "inputs");
    h5::Handle ds = h5::open_dataset(in, "v");
    hsize_t chunk_offset[4] = {0, 0, 0, 0};
    unsigned filter_mask = 0;
    h5::check(H5Dget_chunk_info_by_coord(ds, chunk_offset, &filter_mask, &offset, nullptr), "chunk info");
  }
  std::string bytes = read_bytes(path);
  bytes[offset + 40] = static_cast<char>(bytes[offset + 40] ^ 0x01);
  write_bytes(path, bytes);
  const auto r = run_lla("inspect '" + path.string() + "'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("reading dataset v"), std::string::npos) << r.output;
}

// A file found by the fuzzer on which HDF5 1.10.8 itself crashes (an invalid free
// inside H5Literate). lla parses untrusted files in a child process, so it reports
// the file as corrupt (exit 2) instead of crashing.
TEST(MalformedFixturesRegression, FileThatCrashesHdf5) {
  const auto path = fs::path(LLA_SOURCE_DIR) / "tests" / "golden" / "data" / "hdf5_1.10.8_invalid_free.h5";
  const auto r = run_lla("inspect '" + path.string() + "'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("hdf5_1.10.8_invalid_free.h5"), std::string::npos) << r.output;
}

TEST(FixtureCli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_lla("").exit_code, 2);
  EXPECT_EQ(run_lla("no-such-command").exit_code, 2);
  EXPECT_EQ(run_lla("verify --fixtures").exit_code, 2);
  EXPECT_EQ(run_lla("fixtures generate --suite nope --out /tmp/x-never").exit_code, 2);
  EXPECT_EQ(run_lla("inspect /nonexistent/file.h5").exit_code, 2);
  const auto help = run_lla("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("fixtures"), std::string::npos);
  for (const char* c : {"fixtures generate --help", "verify --help", "inspect --help", "demo --help"}) {
    EXPECT_EQ(run_lla(c).exit_code, 0) << c;
  }
}

TEST(FixtureCli, GenerateNeverOverwritesWithoutForce) {
  TempDir tmp;
  const std::string out = "'" + tmp.path().string() + "'";
  ASSERT_EQ(run_lla("fixtures generate --suite smoke --filter softmax --out " + out).exit_code, 0);
  const auto before = read_bytes(tmp.path() / "softmax_causal_l29_d24.h5");
  const auto r = run_lla("fixtures generate --suite smoke --filter softmax --out " + out);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("pass --force"), std::string::npos) << r.output;
  EXPECT_EQ(read_bytes(tmp.path() / "softmax_causal_l29_d24.h5"), before);
  EXPECT_EQ(run_lla("fixtures generate --suite smoke --filter softmax --force --out " + out).exit_code, 0);
  for (const auto& e : fs::directory_iterator(tmp.path())) {
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << "temporary file left behind: " << e.path();
  }
}

}  // namespace
}  // namespace lla::fixtures
