#!/usr/bin/env node
import { installSignalHandlers } from './context.js';
import { run } from './program.js';

installSignalHandlers();
run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
