#!/usr/bin/env node
'use strict';
// A closed stderr (`taskmeter -- cmd 2>&1 | head -1`) must not change the exit status, which is the command's.
// Touching process.stderr here, before the command starts, also matters: Node makes a piped stderr non-blocking
// when it first opens it, which must happen before the spawner puts the shared pipe back in blocking mode for the
// command, not while the command writes to it. process.stdout is left alone: it is the command's (taskmeter writes
// descriptor 1 directly, for --help and -o -).
process.stderr.on('error', () => {});
const cli = require('../dist/cli.js');
cli
  .main(process.argv.slice(2), { stdout: cli.writeStdoutSync, stderr: (s) => process.stderr.write(s) })
  .then((code) => {
    process.exitCode = code;
  })
  .catch((err) => {
    process.stderr.write(`taskmeter: ${err?.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  });
