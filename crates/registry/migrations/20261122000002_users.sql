-- Accounts of the HTTP services: dispatchers (role user) and operators (role admin).
CREATE TABLE users (
    name TEXT NOT NULL PRIMARY KEY,
    -- user | admin
    role TEXT NOT NULL,
    -- Argon2id PHC string (algorithm, parameters, salt and hash).
    password_hash TEXT NOT NULL,
    -- Unix time in seconds: tokens issued before it do not authenticate this account.
    created_at BIGINT NOT NULL,
    -- Who created the account: "cli" or the admin's name.
    created_by TEXT NOT NULL
);
