// A handler that throws: the SDK turns the exception into a 500 and writes
// the message to stderr, which the host logs with the request id.
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/ok") return new Response("fine");
    throw new Error(`boom at ${path}`);
  },
};
