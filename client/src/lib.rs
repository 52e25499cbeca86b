//! clockwise client SDK (issue #5, not built yet): typed async methods named like the
//! drill methods, leader tracking, retries and idempotent writes. Empty until then.
