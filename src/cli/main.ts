#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

// undici parses HTTP with a WebAssembly module; V8's optimizing tier for it costs ~35 MB of resident
// memory and buys nothing measurable for a CLI that mostly moves bytes. Set before undici compiles it.
setFlagsFromString('--liftoff-only');

const { installSignalHandlers } = await import('./context.js');
const { run } = await import('./program.js');

installSignalHandlers();
run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
