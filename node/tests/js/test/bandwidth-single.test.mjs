// Delta compression, tags filters and cache recovery against one herald-node.
import { defineBandwidthSuite } from '../lib/bandwidth.mjs';

defineBandwidthSuite('single');
