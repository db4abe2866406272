// Unit test of native/win32_cmdline.h (the MSVC command-line quoting of Windows measureCommand), built and run on
// the host by test/ports.test.ts. Each case: argv → the exact command line. Prints "ok N" or the first mismatch.
#include <cstdio>
#include <string>
#include <vector>

#include "win32_cmdline.h"

int main() {
  struct Case {
    std::vector<std::string> argv;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"prog", "plain"}, "prog plain"},
      {{"prog", "two words"}, "prog \"two words\""},
      {{"prog", ""}, "prog \"\""},
      {{"prog", "quote\"inside"}, "prog \"quote\\\"inside\""},
      {{"prog", "trail\\"}, "prog trail\\"},                       // no space: backslashes stay literal
      {{"prog", "trail space\\"}, "prog \"trail space\\\\\""},     // before the closing quote: doubled
      {{"prog", "back\\\\\"slash"}, "prog \"back\\\\\\\\\\\"slash\""},  // 2 backslashes + quote → 5 + quote
      {{"prog", "\\\\server\\share"}, "prog \\\\server\\share"},
      {{"prog", "tab\there"}, "prog \"tab\there\""},
      {{"C:\\Program Files\\x.exe", "a"}, "\"C:\\Program Files\\x.exe\" a"},
      {{"cmd.exe", "/c", "echo hi & exit 3"}, "cmd.exe /c \"echo hi & exit 3\""},
  };
  int n = 0;
  for (const auto& c : cases) {
    std::string got = taskmeter::BuildCommandLine(c.argv);
    if (got != c.want) {
      std::printf("case %d: got [%s] want [%s]\n", n, got.c_str(), c.want.c_str());
      return 1;
    }
    n++;
  }
  std::wstring w = taskmeter::BuildCommandLine(std::vector<std::wstring>{L"p", L"a b\\"});
  if (w != L"p \"a b\\\\\"") {
    std::printf("wide case failed\n");
    return 1;
  }
  std::printf("ok %d\n", n + 1);
  return 0;
}
