// Benchmark plugin: a Node modifier (the Node SDK) with one hook, `modify_request`, that adds
// one header to every request. scripts/bench.sh runs it on every request.
import { ModifierPlugin, serve, setHeader } from '../../plugin-sdk/node/index.js';

class AddHeader extends ModifierPlugin {
  async modifyRequest(request) {
    setHeader(request.headers, 'x-bench', 'node');
    return { request };
  }
}

serve(new AddHeader());
