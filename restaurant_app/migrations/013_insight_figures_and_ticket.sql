-- Insights are stored as their kind and figures; the web server writes each sentence when it
-- shows it, in the reader's language and the restaurant's formats. New rows have no message;
-- rows written before keep theirs, shown when their figures cannot make a sentence.
ALTER TABLE report_insights ALTER COLUMN message DROP NOT NULL;
COMMENT ON COLUMN report_insights.message IS
    'the English sentence of insights written before migration 013; NULL since';

-- "Ticket médio" is revenue per order, as on the dashboard, in /reports and in the README;
-- spend per customer keeps its own name.
CREATE OR REPLACE VIEW relatorio_vendas AS
SELECT period_start            AS periodo,
       gross_revenue           AS total_vendas,
       top_dish                AS prato_mais_vendido,
       items_sold              AS quantidade_total,
       avg_ticket              AS ticket_medio,
       computed_at             AS created_at,
       avg_spend_per_customer  AS gasto_medio_por_cliente
FROM report_sales
WHERE granularity = 'minute';
