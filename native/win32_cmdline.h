// Windows passes a program one command-line string, not argv: this builds that string so that the MSVC C runtime
// (and CommandLineToArgvW) parse it back into exactly the argv we were given. Header-only and free of Windows
// headers, so that test/ports/quote-test.cc checks it on any host. The rules (Microsoft's "Parsing C++ command-line
// arguments"): arguments are separated by spaces or tabs; an argument with a space, a tab or a double quote, or an
// empty one, is wrapped in double quotes; inside, 2n backslashes before a quote become n, 2n+1 backslashes before a
// quote become n and a literal quote; backslashes not before a quote are literal.
#pragma once
#include <string>
#include <vector>

namespace taskmeter {

template <typename Str>
void AppendQuotedArg(const Str& arg, Str* out) {
  using Ch = typename Str::value_type;
  bool needs = arg.empty();
  for (Ch c : arg)
    if (c == Ch(' ') || c == Ch('\t') || c == Ch('\n') || c == Ch('\v') || c == Ch('"')) needs = true;
  if (!needs) {
    out->append(arg);
    return;
  }
  out->push_back(Ch('"'));
  size_t backslashes = 0;
  for (Ch c : arg) {
    if (c == Ch('\\')) {
      backslashes++;
      continue;
    }
    if (c == Ch('"')) {
      out->append(backslashes * 2 + 1, Ch('\\'));  // each backslash doubled, then an escaped quote
    } else {
      out->append(backslashes, Ch('\\'));
    }
    backslashes = 0;
    out->push_back(c);
  }
  out->append(backslashes * 2, Ch('\\'));  // doubled, as they now precede the closing quote
  out->push_back(Ch('"'));
}

// argv[0] is quoted too (a program path with spaces); it may not contain a quote (Windows paths cannot).
template <typename Str>
Str BuildCommandLine(const std::vector<Str>& argv) {
  Str out;
  for (size_t i = 0; i < argv.size(); i++) {
    if (i > 0) out.push_back(typename Str::value_type(' '));
    AppendQuotedArg(argv[i], &out);
  }
  return out;
}

}  // namespace taskmeter
