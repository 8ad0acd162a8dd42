-- Oracle for the "delays" view: carrier × origin × local (America/New_York) day.
-- Written by hand from the view's meaning, over the raw events; it shares no code with facta.
-- JSON numbers only count as numbers (a string "12" is not a delay), as the view's rules say.
WITH flights AS (
    SELECT
        position,
        json_extract_string(data, '$.carrier') AS carrier,
        json_extract_string(data, '$.origin') AS origin,
        json_extract_string(data, '$.tailnum') AS tailnum,
        CASE WHEN json_type(data, '$.dep_delay') IN ('DOUBLE', 'BIGINT', 'UBIGINT')
             THEN CAST(json_extract(data, '$.dep_delay') AS DOUBLE) END AS dep_delay,
        CASE WHEN json_type(data, '$.arr_delay') IN ('DOUBLE', 'BIGINT', 'UBIGINT')
             THEN CAST(json_extract(data, '$.arr_delay') AS DOUBLE) END AS arr_delay,
        CASE WHEN json_type(data, '$.distance') IN ('BIGINT', 'UBIGINT')
             THEN CAST(json_extract(data, '$.distance') AS BIGINT) END AS distance,
        CAST(timezone('America/New_York',
                      CAST(json_extract_string(data, '$.time_hour') AS TIMESTAMPTZ)) AS DATE)
            AS local_day
    FROM events
    WHERE type = 'FlightDeparted'
)
SELECT
    carrier,
    origin,
    local_day,
    count(*) AS flights,
    sum(dep_delay) AS delay_sum,
    count(dep_delay) AS delay_n,
    sum(abs(dep_delay)) AS delay_abs,
    sum(dep_delay * dep_delay) AS delay_sq,
    sum(distance) AS miles,
    avg(dep_delay) AS delay,
    var_samp(dep_delay) AS delay_var,
    stddev_pop(dep_delay) AS delay_sd,
    min(dep_delay) AS delay_min,
    max(dep_delay) AS delay_max,
    covar_samp(arr_delay, dep_delay) AS delay_cov,
    corr(arr_delay, dep_delay) AS delay_r,
    count(*) FILTER (WHERE dep_delay IS NOT NULL AND arr_delay IS NOT NULL) AS pairs_n,
    arg_max(tailnum, position) FILTER (WHERE tailnum IS NOT NULL) AS last_plane,
    arg_min(tailnum, position) FILTER (WHERE tailnum IS NOT NULL) AS first_plane,
    count(DISTINCT tailnum) AS planes
FROM flights
GROUP BY carrier, origin, local_day
ORDER BY carrier, origin, local_day
