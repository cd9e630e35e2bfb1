// centrifuge-js against one herald-node on the embedded broker.
import { defineSuite } from '../lib/suite.mjs';

defineSuite('single');
