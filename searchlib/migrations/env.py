"""Alembic environment: migrations run on the connection searchlib passes in."""

from alembic import context

from searchlib.catalog.schema import metadata as target_metadata

config = context.config



def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # command-line alembic use: connect to the URL given in the config
        from sqlalchemy import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
