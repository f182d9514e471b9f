-- wrk script: POST the same JSON body on every request, with a bearer token.
-- The body is read from the file named by env WRK_BODY, the token from env WRK_TOKEN:
--   WRK_BODY=benchmarks/baac-request.json WRK_TOKEN=secret \
--     wrk -t2 -c32 -d20s --latency -s benchmarks/wrk-post.lua http://127.0.0.1:8100/predict
local path = assert(os.getenv("WRK_BODY"), "set WRK_BODY to the request body file")
local token = assert(os.getenv("WRK_TOKEN"), "set WRK_TOKEN to the bearer token")
local file = assert(io.open(path, "rb"))

wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
