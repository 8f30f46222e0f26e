-- wrk script: request /obj/0 .. /obj/(N-1) once each, then stop.
--
--   wrk -t1 -c64 -d120s -s bench/walk_objects.lua http://127.0.0.1:PORT -- N [PREFIX [DONE_FILE]]
--
-- Used by bench/cache.sh to fill a cache with N distinct small objects (and to
-- walk them a second time to count how many were kept). Bounded twice: the
-- thread stops after N responses, and wrk's -d caps the time.
--
-- wrk's main thread sleeps for the whole -d whatever its threads do, so after
-- the N-th response the script also creates DONE_FILE (if given): the caller
-- waits for it and then sends wrk a SIGINT, which makes wrk print its summary
-- and exit at once.
--
-- One thread only (-t1): the URL counter is per thread. Once all N requests
-- are sent, the connections still waiting for the last responses start over
-- at /obj/0 (objects already fetched), so at most -c extra requests go out
-- and none of them is a new object.

local n = 100000
local prefix = "/obj/"
local sent = 0
local received = 0
local done_file = nil

function init(args)
    n = tonumber(args[1]) or n
    prefix = args[2] or prefix
    done_file = args[3]
end

function request()
    local k = sent % n
    sent = sent + 1
    return wrk.format(nil, prefix .. k)
end

function response(status, headers, body)
    received = received + 1
    if received == n then
        if done_file then
            local f = io.open(done_file, "w")
            if f then
                f:write(received, "\n")
                f:close()
            end
        end
        wrk.thread:stop()
    end
end
