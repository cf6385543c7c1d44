-- A secret shared by every replica (through this row), signing the opaque
-- tokens the service hands out (list page tokens), so any replica can verify
-- any other's and clients cannot forge or alter them.
CREATE TABLE server_secret (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret bytea NOT NULL
);
INSERT INTO server_secret (secret)
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
