// A started tracker that is never stopped, and an idle one: neither may keep the event loop alive.
const { ResourceTracker } = require('../../dist/index.js');
globalThis.keep = [new ResourceTracker().start(), new ResourceTracker()];
console.log('script done');
