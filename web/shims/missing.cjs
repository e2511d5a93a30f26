// Browser stand-in for Node built-ins the page never calls (os, util, child_process, worker_threads,
// ...): any use names the function and says it is not available in the page.
module.exports = new Proxy(
  {},
  {
    get(_, key) {
      if (key === "__esModule" || key === "default" || typeof key === "symbol") return undefined;
      return function () {
        throw new Error(`${String(key)}: a Node built-in, not available in the web page`);
      };
    },
  },
);
