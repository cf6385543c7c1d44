-- How far the change feed has been pruned: cursors at or before this position
-- are expired (OUT_OF_RANGE, CURSOR_EXPIRED), so clients list again.
CREATE TABLE feed_state (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    pruned_xid xid8 NOT NULL,
    pruned_seq bigint NOT NULL
);
INSERT INTO feed_state (pruned_xid, pruned_seq) VALUES ('0', 0);
