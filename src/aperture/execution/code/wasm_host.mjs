// The wasm runtime's host: loads Pyodide (CPython compiled to WebAssembly) in Node, fences Node off from the
// program, signals that it is ready, then runs code mode's shared prelude (_prelude.py) on one program and exits.
//
// Usage: node wasm_host.mjs PYODIDE_DIR PRELUDE_PATH BRIDGE_FD (run by aperture/execution/code/wasm.py, inside
// the same bubblewrap sandbox as the bwrap runtime and under Node's permission model).
//
// The bridge is synchronous without workers: the program's tool calls reach the gateway through two JS functions
// that do blocking fs.writeSync / fs.readSync on the inherited socket (4-byte big-endian length + UTF-8 JSON,
// as in protocol.py). Python sees only those two functions: frozen, with a null prototype, taking and returning
// strings.
import fs from "node:fs";
import { Buffer } from "node:buffer";

const [pyodideDir, preludePath, fdText] = process.argv.slice(2);
const BRIDGE = Number(fdText);
const MAX_FRAME = 16 * 1024 * 1024;
const exit = process.exit.bind(process);
const { readSync, writeSync } = fs;

function writeAll(fd, bytes) {
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(fd, bytes, offset, bytes.length - offset);
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
    }
  }
}

function readExact(count) {
  const buffer = Buffer.alloc(count);
  let offset = 0;
  while (offset < count) {
    let got;
    try {
      got = readSync(BRIDGE, buffer, offset, count - offset, null);
    } catch (error) {
      if (error.code === "EAGAIN") continue;
      throw error;
    }
    if (got === 0) exit(3); // the gateway closed the bridge
    offset += got;
  }
  return buffer;
}

function fenced(fn) {
  Object.setPrototypeOf(fn, null); // no .constructor, .call, .bind: nothing leads from it to Function
  return Object.freeze(fn);
}

const sendFrame = fenced(function sendFrame(text) {
  const body = Buffer.from(String(text), "utf8");
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  writeAll(BRIDGE, Buffer.concat([header, body]));
});

const receiveFrame = fenced(function receiveFrame() {
  const size = readExact(4).readUInt32BE(0);
  if (size > MAX_FRAME) exit(4);
  return readExact(size).toString("utf8");
});

// Pyodide's Node file system reads constants through process.binding, which the permission model refuses.
process.binding = (name) => {
  if (name === "constants") return { fs: fs.constants };
  throw new Error(`process.binding(${name}) is not available`);
};

const { loadPyodide } = await import(`${pyodideDir}/pyodide.mjs`);
const write = (fd) => ({ write: (bytes) => (writeAll(fd, bytes), bytes.length) });
const pyodide = await loadPyodide({ indexURL: `${pyodideDir}/`, env: { HOME: "/tmp" }, stdin: () => null });
pyodide.setStdout(write(1));
pyodide.setStderr(write(2));
const prelude = fs.readFileSync(preludePath, "utf8");

// The fence: nothing the program can reach from Python's `js` (globalThis), `pyodide_js` or `pyodide.code.run_js`
// (code evaluated in the global scope, the place `.constructor.constructor` leads to) reaches Node's process,
// require, fetch or the network. (The module scope above is not reachable from there.)
for (const name of [
  "process",
  "global",
  "require",
  "module",
  "fetch",
  "Request",
  "Response",
  "Headers",
  "FormData",
  "WebSocket",
  "EventSource",
  "navigator",
  "Buffer",
  "setTimeout",
  "setInterval",
  "setImmediate",
  "console",
]) {
  delete globalThis[name];
}
globalThis.console = fenced(function console() {});

const scope = pyodide.toPy({ __name__: "_aperture_prelude" });
pyodide.runPython(prelude, { globals: scope });
scope.set("_receive_frame", receiveFrame);
scope.set("_send_frame", sendFrame);
const main = scope.get("_main");
scope.destroy();

writeAll(BRIDGE, Buffer.from("R")); // ready: the gateway sends the program now
try {
  main();
} catch (error) {
  writeAll(2, Buffer.from(`the interpreter failed: ${error}\n`));
  exit(2);
}
exit(0); // synchronously: no callback the program scheduled ever runs
