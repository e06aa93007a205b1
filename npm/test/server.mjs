// A small HTTP server for the Node and browser tests: the package's files (static), and an
// upload/download store with HTTP Range support that counts what it serves.
//
//   PUT /files/<name>   stores the body           GET /files/<name>  200, or 206 with Range
//   GET /<path>         a file under npm/ (the page, src/, pkg/)
//   /v1/...             with `startServer({ proxy })`: forwarded to that origin (a running
//                       `keystead serve`), so pages reach the key directory on their own
//                       origin. Path, query and `Host` pass unchanged: device signatures
//                       cover them.
import { createServer, request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const npmRoot = fileURLToPath(new URL('..', import.meta.url));
const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

// Forwards `req` to `target` (an http:// origin) and streams the answer back. Headers pass
// as they came, `Host` included; hop-by-hop ones are left to Node.
function forward(req, res, target) {
  const hop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!hop.has(k)) headers[k] = v;
  const t = new URL(target);
  const up = httpRequest(
    { hostname: t.hostname, port: t.port, method: req.method, path: req.url, headers },
    (answer) => {
      const back = {};
      for (const [k, v] of Object.entries(answer.headers)) if (!hop.has(k)) back[k] = v;
      res.writeHead(answer.statusCode ?? 502, back);
      answer.pipe(res);
    },
  );
  up.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
    res.end(`proxy: ${e.message}`);
  });
  req.pipe(up);
}

export async function startServer(options = {}) {
  const files = new Map();
  const stats = { uploads: 0, fullGets: 0, rangeGets: 0, bytesServed: 0 };
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      if (options.proxy && url.pathname.startsWith('/v1/')) {
        forward(req, res, options.proxy);
        return;
      }
      if (url.pathname.startsWith('/files/')) {
        const name = url.pathname.slice('/files/'.length);
        if (req.method === 'PUT') {
          const parts = [];
          for await (const chunk of req) parts.push(chunk);
          files.set(name, Buffer.concat(parts));
          stats.uploads++;
          res.writeHead(201).end();
          return;
        }
        const body = files.get(name);
        if (!body) {
          res.writeHead(404).end();
          return;
        }
        const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
        if (range) {
          const start = Number(range[1]);
          const end = range[2] === '' ? body.length - 1 : Math.min(Number(range[2]), body.length - 1);
          if (start >= body.length || end < start) {
            res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
            return;
          }
          stats.rangeGets++;
          stats.bytesServed += end - start + 1;
          res.writeHead(206, {
            'Content-Type': 'application/octet-stream',
            'Content-Range': `bytes ${start}-${end}/${body.length}`,
            'Content-Length': end - start + 1,
            'Accept-Ranges': 'bytes',
          });
          res.end(body.subarray(start, end + 1));
          return;
        }
        stats.fullGets++;
        stats.bytesServed += body.length;
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, 'Accept-Ranges': 'bytes' });
        res.end(body);
        return;
      }
      const path = normalize(join(npmRoot, decodeURIComponent(url.pathname)));
      if (!path.startsWith(npmRoot) || path.includes('node_modules')) {
        res.writeHead(403).end();
        return;
      }
      const data = await readFile(path);
      res.writeHead(200, { 'Content-Type': types[extname(path)] ?? 'application/octet-stream' });
      res.end(data);
    } catch (e) {
      res.writeHead(e.code === 'ENOENT' ? 404 : 500).end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    files,
    stats,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
