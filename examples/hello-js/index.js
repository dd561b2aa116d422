// The smallest Bonus function in JavaScript: answers every request with
// `hello`. Build: `bonus build examples/hello-js` (or
// `npx bonus-build-js examples/hello-js` inside sdk-js/).
export default {
  async fetch(request) {
    return new Response("hello");
  },
};
