// A gRPC upstream that costs the REST edge benchmark next to nothing: bench/chain.py's (c) and (c1).
//
// The edge-workers comparison measures the REST edge, so its upstream must not be the limit. On a
// 2-core machine a Python grpc.aio server needs about as much CPU per call as one edge worker, so with
// the edge's workers on every core it would cap the figure itself. grpc-js (Node's pure-JavaScript
// gRPC) answers the same GetPing for a fraction of that.
//
// It serves /benchmark.v1.BenchmarkService/GetPing with raw bytes, no protobuf library: a request
// equal to REQUEST_HEX is answered with RESPONSE_HEX (both serialised by bench/chain.py from the
// generated messages) and counted as OK; anything else is NOT_FOUND, counted as failed. SIGUSR1 prints
// "served ok=N failed=M" like bench/upstream.py; SIGTERM stops it.
//
// Usage: node bench/grpc_js_upstream.js PORT REQUEST_HEX RESPONSE_HEX   (PORT 0 picks a free one)
// The first line printed is "grpc-js upstream on 127.0.0.1:PORT".
'use strict';

const grpc = require('@grpc/grpc-js');

const [port, requestHex, responseHex] = process.argv.slice(2);
if (port === undefined || requestHex === undefined || responseHex === undefined) {
  console.error('usage: node bench/grpc_js_upstream.js PORT REQUEST_HEX RESPONSE_HEX');
  process.exit(2);
}
const expected = Buffer.from(requestHex, 'hex');
const response = Buffer.from(responseHex, 'hex');
const raw = (value) => value;
let ok = 0;
let failed = 0;

const server = new grpc.Server();
server.addService(
  {
    GetPing: {
      path: '/benchmark.v1.BenchmarkService/GetPing',
      requestStream: false,
      responseStream: false,
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: raw,
      responseDeserialize: raw,
    },
  },
  {
    GetPing(call, callback) {
      if (call.request.equals(expected)) {
        ok += 1;
        callback(null, response);
      } else {
        failed += 1;
        callback({ code: grpc.status.NOT_FOUND, details: 'no such ping' });
      }
    },
  },
);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => {
  if (error) {
    console.error(`grpc-js upstream: cannot listen on 127.0.0.1:${port}: ${error.message}`);
    process.exit(1);
  }
  console.log(`grpc-js upstream on 127.0.0.1:${bound}`);
});
process.on('SIGUSR1', () => console.log(`served ok=${ok} failed=${failed}`));
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
