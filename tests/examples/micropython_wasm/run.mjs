// Runs scenario.py under MicroPython's WebAssembly port with examples/micropython/main.py and
// the stand-ins of board/ in its file system. See README.md.
import fs from "fs";
import path from "path";
import url from "url";

// MICROPYTHON_MJS: the port's micropython.mjs (from npm), wherever it was installed.
const where = process.env.MICROPYTHON_MJS;
const { loadMicroPython } = await import(
  where ? url.pathToFileURL(where).href : "@micropython/micropython-webassembly-pyscript"
);
const here = path.dirname(url.fileURLToPath(import.meta.url));
const example = path.join(here, "..", "..", "..", "examples", "micropython", "main.py");
const mp = await loadMicroPython({
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
mp.FS.mkdir("/board");
mp.FS.mkdir("/board/umqtt");
mp.FS.writeFile("/board/main.py", fs.readFileSync(example));
for (const name of ["config.py", "machine.py", "network.py", "umqtt/__init__.py", "umqtt/simple.py"]) {
  mp.FS.writeFile("/board/" + name, fs.readFileSync(path.join(here, "board", name)));
}
try {
  mp.runPython(fs.readFileSync(path.join(here, "scenario.py"), "utf8"));
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
