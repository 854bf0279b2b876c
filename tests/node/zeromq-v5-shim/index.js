// zerorpc's `require("zeromq")`, answered by zeromq 6's copy of the version 4 API.
module.exports = require("zeromq6/v5-compat");
