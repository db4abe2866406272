// Command lines as a POSIX shell user types them (the CLI's report, a command's timeline title).

/** An argument as a POSIX shell needs it typed: bare when that is safe, else in single quotes. */
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, "'\\''")}'`;
}

/** A command line as typed in a shell: `sh -c 'echo "$HOME"'`. */
export const shellCommand = (argv: readonly string[]): string => argv.map(shellQuote).join(' ');
