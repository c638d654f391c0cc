-- wrk script (`bench/run.sh --wrk-script bench/cookies.lua`): clients that send back the cookie
-- they were given, as a browser does. The first Set-Cookie a thread hears becomes that thread's
-- Cookie header for every later request, so a sticky strategy (sticky_cookie.wasm) is measured in
-- its steady state: pinned clients, no new cookie per request.

local cookie = nil

response = function(status, headers, body)
    if cookie == nil then
        local set = headers["Set-Cookie"] or headers["set-cookie"]
        if set ~= nil then
            cookie = string.match(set, "^[^;]+")
            wrk.headers["Cookie"] = cookie
        end
    end
end

-- Built per request (not once at start), so that the Cookie header goes out once it is known.
request = function()
    return wrk.format()
end
