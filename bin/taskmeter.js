#!/usr/bin/env node
'use strict';
require('../dist/cli.js')
  .main(process.argv.slice(2), { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) })
  .then((code) => {
    process.exitCode = code;
  })
  .catch((err) => {
    process.stderr.write(`taskmeter: ${err?.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  });
