// centrifuge-js's Protobuf build against one herald-node on the embedded broker: the
// same conformance cases as test/single.test.mjs.
import { defineSuite } from '../lib/suite.mjs';

defineSuite('single', 'protobuf');
