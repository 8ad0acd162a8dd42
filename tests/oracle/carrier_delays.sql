-- Oracle for quantiles per carrier over the whole year: every delay, sorted, per carrier.
WITH delays AS (
    SELECT
        json_extract_string(data, '$.carrier') AS carrier,
        CAST(json_extract(data, '$.dep_delay') AS DOUBLE) AS dep_delay
    FROM events
    WHERE type = 'FlightDeparted'
      AND json_type(data, '$.dep_delay') IN ('DOUBLE', 'BIGINT', 'UBIGINT')
)
SELECT carrier, list(dep_delay ORDER BY dep_delay) AS delays
FROM delays
GROUP BY carrier
ORDER BY carrier
