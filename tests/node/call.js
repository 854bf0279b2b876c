// Call one function with the Node.js zerorpc client and print the outcome as one JSON line:
//   node call.js tcp://127.0.0.1:4242 name '[arg, ...]'
// prints {"result": ...} or {"error": {"name": ..., "message": ...}}.
const zerorpc = require("zerorpc");

const [endpoint, name, args] = process.argv.slice(2);
const client = new zerorpc.Client({ timeout: 20, heartbeatInterval: 5000 });
client.connect(endpoint);

const done = (outcome) => {
  console.log(JSON.stringify(outcome));
  client.close();
  process.exit(0);
};
client.invoke(name, ...JSON.parse(args || "[]"), (error, result) => {
  done(error ? { error: { name: error.name, message: error.message } } : { result });
});
setTimeout(() => done({ error: { name: "Timeout", message: "no reply in 30 s" } }), 30000);
