-- Oracle for top_k(dest) per origin: the exact count of every destination from every origin.
SELECT
    json_extract_string(data, '$.origin') AS origin,
    json_extract_string(data, '$.dest') AS dest,
    count(*) AS flights
FROM events
WHERE type = 'FlightDeparted'
GROUP BY origin, dest
ORDER BY origin, flights DESC, dest
