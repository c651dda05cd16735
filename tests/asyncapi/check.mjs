// Parse AsyncAPI documents with the official parser and print its diagnostics.
//   node check.mjs FILE.json...
// Prints one line per diagnostic (severity, code, path, message) and a summary per
// file; exits 1 if any document has an error. Warnings and hints are printed only.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const SEVERITY = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "info",
  [DiagnosticSeverity.Hint]: "hint",
};

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"));
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    console.log(`${file}: ${SEVERITY[d.severity]} ${d.code} at ${d.path.join(".") || "(root)"}: ${d.message}`);
  }
  if (!document || errors.length) failed = true;
  const channels = document ? document.channels().length : 0;
  const operations = document ? document.operations().length : 0;
  console.log(`${file}: ${document && !errors.length ? "valid" : "INVALID"} AsyncAPI ${document ? document.version() : "?"}, ` +
    `${channels} channels, ${operations} operations, ${errors.length} errors, ${diagnostics.length - errors.length} other diagnostics`);
}
process.exit(failed ? 1 : 0);
