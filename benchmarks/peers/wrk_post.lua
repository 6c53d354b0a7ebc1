-- wrk script: POST the same body on every request.
--   WRK_BODY  file holding the request body (required), e.g. bodies/sendgrid.json
--   WRK_TYPE  Content-Type (default application/json); for Mailgun, the contents of
--             bodies/mailgun.type, which carries the multipart boundary
-- wrk adds Content-Length and Host itself.

local body_path = os.getenv("WRK_BODY")
if body_path == nil or body_path == "" then
   error("set WRK_BODY to the file holding the request body")
end
local f = assert(io.open(body_path, "rb"))
local body = f:read("*a")
f:close()

local content_type = os.getenv("WRK_TYPE")
if content_type == nil or content_type == "" then
   content_type = "application/json"
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = content_type
