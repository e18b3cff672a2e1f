-- Every lower-cased product id and product name, pointing at its product: events name their
-- product by either, case-insensitively (SPEC §3.1). The catalog rejects a name or id that
-- matches two products, so a key is unique.

with

products as (

    select
        product_id,
        product_name
    from {{ ref('stg_catalog__products') }}

),

unioned as (

    select
        lower(product_id) as product_key,
        product_id
    from products

    union

    select
        lower(product_name) as product_key,
        product_id
    from products

)

select * from unioned
