// One unary call with the official Connect client for Node
// (@connectrpc/connect-node), over code @bufbuild/protoc-gen-es generated
// from proto/ (scripts/integrator-tools). Copied next to that code to run.
// Usage: target/integrators/node connect_client.mjs BASE_URL TOKEN PROCEDURE json|binary 1.1|2 < request.json
// Prints {"ok": {"json", "binary"}} or {"error": {"code", "message", "details"}}.
import { readFileSync } from "node:fs";
import { createClient, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { fromJson, toBinary, toJson } from "@bufbuild/protobuf";

const [baseUrl, token, procedure, format, httpVersion] = process.argv.slice(2);
const input = JSON.parse(readFileSync(0, "utf8"));
const [serviceName, methodName] = procedure.split("/");
const short = serviceName.split(".").pop();
const file = short.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase() + "_pb.js";
const generated = await import(new URL(`./gen/vpnregistry/v1/${file}`, import.meta.url));
const service = generated[short];
const method = service.methods.find((m) => m.name === methodName);

const bearer = (next) => async (req) => {
  req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};
const transport = createConnectTransport({
  baseUrl,
  httpVersion,
  useBinaryFormat: format === "binary",
  interceptors: [bearer],
});
const client = createClient(service, transport);
try {
  const response = await client[method.localName](fromJson(method.input, input));
  const binary = Buffer.from(toBinary(method.output, response)).toString("base64");
  console.log(JSON.stringify({ ok: { json: toJson(method.output, response), binary } }));
} catch (e) {
  const error = ConnectError.from(e);
  const details = error.details.map((d) => ({
    type: d.type ?? d.desc.typeName,
    value: Buffer.from(d.value instanceof Uint8Array ? d.value : toBinary(d.desc, d.value)).toString("base64"),
    debug: d.debug ?? null,
  }));
  console.log(JSON.stringify({ error: { code: error.code, message: error.rawMessage, details } }));
}
