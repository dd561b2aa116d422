// A small JSON API in TypeScript: path routing, JSON in and out and an
// environment variable, like the Rust `api` example.
//
// - `GET /` lists the routes.
// - `GET /hello/:name` greets, using `GREETING` (default `hello`).
// - `POST /echo` parses a JSON object and returns it with `"echoed": true`.

type Env = Record<string, string | undefined>;
type Handler = (request: Request, params: Record<string, string>, env: Env) => Response | Promise<Response>;

const routes: Array<[method: string, pattern: string, handler: Handler]> = [
  ["GET", "/", () => Response.json(["GET /hello/:name", "POST /echo"])],
  ["GET", "/hello/:name", greet],
  ["POST", "/echo", echo],
];

function greet(_request: Request, params: Record<string, string>, env: Env): Response {
  const greeting = env.GREETING ?? "hello";
  return Response.json({ greeting: `${greeting}, ${params.name}`, name: params.name });
}

async function echo(request: Request): Promise<Response> {
  let body: unknown;
  try {
    body = await request.json();
  } catch (error) {
    return Response.json({ error: `invalid JSON: ${(error as Error).message}` }, { status: 400 });
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return Response.json({ error: "expected a JSON object" }, { status: 400 });
  }
  return Response.json({ ...body, echoed: true });
}

function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split("/");
  const got = path.split("/");
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(":")) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const path = new URL(request.url).pathname;
    let pathMatched = false;
    for (const [method, pattern, handler] of routes) {
      const params = match(pattern, path);
      if (!params) continue;
      pathMatched = true;
      if (method === request.method) return handler(request, params, env);
    }
    return pathMatched
      ? Response.json({ error: "method not allowed" }, { status: 405 })
      : Response.json({ error: `no route for ${path}` }, { status: 404 });
  },
};
