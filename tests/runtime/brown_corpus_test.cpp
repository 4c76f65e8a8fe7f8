// Brown corpus: tag stripping and spacing rules, paragraphs, file selection and order.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/core/error.h"
#include "runtime/data/brown_corpus.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() /
                     fmt::format("tandem_brown_test_{}_{}", name, static_cast<long>(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

TEST(BrownCorpus, StripsTagsAndTurnsQuotes) {
  EXPECT_EQ(strip_brown_tags("\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.\n"),
            "The jury said \"no evidence\".\n");
}

TEST(BrownCorpus, NaturalSpacing) {
  EXPECT_EQ(strip_brown_tags("\tYes/rb ,/, he/pps said/vbd ;/. why/wrb ?/. Now/rb !/. So/rb :/: "
                             "go/vb ./.\n"),
            "Yes, he said; why? Now! So: go.\n");
  EXPECT_EQ(strip_brown_tags("\tthat/cs :/: (/( 1/cd )/) four/cd [/( 2/cd ]/) it/pps voted/vbd "
                             "no/rb --/-- and/cc ./.\n"),
            "that: (1) four [2] it voted no--and.\n");
  EXPECT_EQ(strip_brown_tags("\tJohn/np 's/$ dog/nn do/do n't/* go/vb ;/. I/ppss 'll/md go/vb "
                             "./.\n"),
            "John's dog don't go; I'll go.\n");
  EXPECT_EQ(strip_brown_tags("\tmore/ap '/' pro/jj '/' than/in '/' con/jj '/' ./.\n"),
            "more 'pro' than 'con'.\n");
  EXPECT_EQ(strip_brown_tags("\tby/in Ivan/np Allen/np Jr./np ./.\n"), "by Ivan Allen Jr.\n");
}

TEST(BrownCorpus, TagIsAfterTheLastSlash) {
  EXPECT_EQ(strip_brown_tags("\t1/2/cd and/or/cc //in mg/l/nn ./.\n"), "1/2 and/or / mg/l.\n");
}

TEST(BrownCorpus, ParagraphsAndHeadlines) {
  const std::string tagged =
      "\n\n\tFirst/od sentence/nn ./.\n\n\n"
      "Second/od sentence/nn ./.\n\n\n"
      "Merger/nn-hl proposed/vbn-hl \n"
      "However/wrb ,/, more/ap ./.\n\n\n"
      "\tNew/jj paragraph/nn ./.\n";
  EXPECT_EQ(strip_brown_tags(tagged),
            "First sentence. Second sentence.\nMerger proposed\nHowever, more.\nNew paragraph.\n");
  EXPECT_EQ(strip_brown_tags(""), "");
  EXPECT_EQ(strip_brown_tags("\n\n  \n"), "");
}

TEST(BrownCorpus, FixtureExcerpt) {
  const std::string text =
      strip_brown_tags(slurp(std::string(TANDEM_TEST_DATA) + "/brown_tagged_excerpt.txt"));
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 27u) << text;
  EXPECT_EQ(lines[0],
            "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
            "election produced \"no evidence\" that any irregularities took place.");
  EXPECT_EQ(lines[7], "Merger proposed");
  EXPECT_NE(text.find("We're getting more 'pro' letters than 'con' on horse race betting\", said "
                      "Ratcliff."),
            std::string::npos);
  EXPECT_NE(text.find("recommended that: (1) Four additional"), std::string::npos);
  EXPECT_EQ(text.find('/'), std::string::npos);
  EXPECT_EQ(text.find("``"), std::string::npos);
  EXPECT_EQ(text.find(" ,"), std::string::npos);
  EXPECT_EQ(text.find(" ."), std::string::npos);
}

TEST(BrownCorpus, CorpusFileNames) {
  EXPECT_TRUE(is_brown_corpus_file("ca01"));
  EXPECT_TRUE(is_brown_corpus_file("cr09"));
  EXPECT_FALSE(is_brown_corpus_file("cs01"));
  EXPECT_FALSE(is_brown_corpus_file("README"));
  EXPECT_FALSE(is_brown_corpus_file("cats.txt"));
  EXPECT_FALSE(is_brown_corpus_file("ca01.bak"));
  EXPECT_FALSE(is_brown_corpus_file("categories.pickle"));
}

TEST(BrownCorpus, ReadsCorpusFilesInSortedOrderOnly) {
  const fs::path d = fresh_dir("read");
  write(d / "cb02", "\tSecond/od ./.\n");
  write(d / "ca01", "\tFirst/od ./.\n");
  write(d / "cr09", "\tLast/ap ./.\n");
  for (const char* other : {"README", "CONTENTS", "cats.txt", "categories.pickle", "package.json"})
    write(d / other, "\tNot/* corpus/nn ./.\n");
  const auto docs = read_brown_corpus(d.string());
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].name, "ca01");
  EXPECT_EQ(docs[0].text, "First.\n");
  EXPECT_EQ(docs[1].name, "cb02");
  EXPECT_EQ(docs[2].name, "cr09");
  fs::remove_all(d);
}

TEST(BrownCorpus, ErrorsNameTheDirectory) {
  try {
    read_brown_corpus("/nonexistent/brown-raw");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/brown-raw"), std::string::npos) << e.what();
  }
  const fs::path d = fresh_dir("empty");
  write(d / "README", "nothing");
  try {
    read_brown_corpus(d.string());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(d.string()), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(BrownCorpus, RealCorpusHas500Documents) {
  const std::string raw = std::string(TANDEM_DATA_DIR) + "/brown-raw";
  if (!fs::exists(raw + "/ca01"))
    GTEST_SKIP() << "Brown corpus not found in " << raw
                 << " (run ./launch/fetch_data build/tandem; ./launch/test does it first)";
  const auto docs = read_brown_corpus(raw);
  ASSERT_EQ(docs.size(), 500u);
  EXPECT_EQ(docs.front().name, "ca01");
  EXPECT_EQ(docs.back().name, "cr09");
  size_t bytes = 0;
  for (const auto& d : docs) {
    bytes += d.text.size();
    EXPECT_EQ(d.text.find("``"), std::string::npos) << d.name;
  }
  EXPECT_GT(bytes, 5'000'000u);
  EXPECT_LT(bytes, 7'000'000u);
}

}  // namespace
}  // namespace tandem
