-- Oracle for distinct(_stream) over the whole log, and distinct tail numbers per carrier.
SELECT 'all' AS carrier, count(DISTINCT stream) AS exact FROM events WHERE type = 'FlightDeparted'
UNION ALL
SELECT json_extract_string(data, '$.carrier'), count(DISTINCT json_extract_string(data, '$.tailnum'))
FROM events WHERE type = 'FlightDeparted'
GROUP BY 1
ORDER BY 1
