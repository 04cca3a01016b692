"""create_app(settings) -> Litestar: plugins, middleware, routers; nothing else."""

from __future__ import annotations

import asyncio
import gc
import logging
from concurrent.futures import ThreadPoolExecutor

from anyio import to_thread
from litestar import Litestar, Router, get
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import PACKAGE
from app.config import Settings
from app.db.engine import make_engine, make_sessionmaker
from app.realtime.broker import BrokerStatus
from app.realtime.bus import Bus, make_channels_plugin
from app.realtime.limits import RateLimiter, RedisRateLimiter
from app.realtime.presence import make_presence, presence_announcer
from app.realtime.stream import StreamRegistry
from app.realtime.webhook_worker import WebhookWorker
from app.templating import environment
from app.web import bodies, redact, stopping
from app.web.admin import AdminController
from app.web.api import api_router
from app.web.auth import AuthController
from app.web.chat import ChatController
from app.web.consulting import ConsultingController
from app.web.deps import provide_db
from app.web.errors import EXCEPTION_HANDLERS
from app.web.events import events
from app.web.files import FilesController
from app.web.health import healthz
from app.web.i18n_hook import set_locale
from app.web.intervention import InterventionController
from app.web.orders_panel import OrdersPanelController
from app.web.quick_replies import QuickRepliesController, SendQuickReplyController
from app.web.requests import KefuRequest
from app.web.search import SearchController
from app.web.security import SecurityHeadersMiddleware, UntrustedForwardingWarning
from app.web.urls import url_maker

log = logging.getLogger("kefu")
CANCELLED_AT_SHUTDOWN = stopping.CancelledAtShutdown()


@get("/", include_in_schema=False)
async def home() -> Redirect:
    """GET /: a redirect (302) to the chat, /chat."""
    return Redirect("/chat")


FAVICON = "<link rel='icon' type='image/svg+xml' href='/static/favicon.svg'>"


def openapi_config() -> OpenAPIConfig:
    """OpenAPI of /api/v1, with Swagger UI and ReDoc served from static/vendor (no CDN)."""
    swagger = "/static/vendor/swagger-ui-5.35.0"
    return OpenAPIConfig(
        title="Kefu API",
        version="1.0.0",
        description="Provision people, send them into a chat, post order notices, read conversations. "
                    "Authenticate with `Authorization: Bearer <key>` (`kefu apikey create NAME`).",
        path="/api",
        use_handler_docstrings=True,  # each operation's description is its handler's docstring
        render_plugins=[
            SwaggerRenderPlugin(path="/docs", js_url=f"{swagger}/swagger-ui-bundle.js",
                                css_url=f"{swagger}/swagger-ui.css",
                                standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
                                favicon=FAVICON),
            RedocRenderPlugin(path="/redoc", js_url="/static/vendor/redoc-2.5.4/redoc.standalone.js",
                              google_fonts=False, favicon=FAVICON),
        ],
        components=Components(security_schemes={"BearerToken": SecurityScheme(type="http", scheme="bearer")}),
    )


@get("/docs", include_in_schema=False)
async def docs_redirect() -> Redirect:
    """GET /docs: a redirect (302) to the API's Swagger UI, /api/docs."""
    return Redirect("/api/docs")


@get("/redoc", include_in_schema=False)
async def redoc_redirect() -> Redirect:
    """GET /redoc: a redirect (302) to the API's ReDoc page, /api/redoc."""
    return Redirect("/api/redoc")


def tune_process(threads: int) -> None:
    """Once per process, at start-up: the app's long-lived objects (modules, mappers, templates) out of the garbage
    collector's sight and fewer young collections (under load, full collections scanned them all and stopped the
    process for 66–102 ms every 5–7 s; with this, none ran in the same test), and `threads` worker threads for sync
    handlers and database work (anyio's and the loop's executor): enough to overlap the waits on MariaDB; more only
    queue for the GIL (32 spent more CPU handing it over than serving). Both measured in docs/performance.md."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    to_thread.current_default_thread_limiter().total_tokens = threads
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kefu-handler")
    asyncio.get_running_loop().set_default_executor(executor)


def app_state(settings: Settings) -> State:
    """The app's long-lived parts: the database engine and sessions, the channels (in memory or on Redis) and the bus
    on them, presence, the event streams' registry, the rate limiters and the webhook worker."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    broker = BrokerStatus("redis" if settings.broker_url else "memory")
    channels = make_channels_plugin(settings.broker_url, broker, settings.broker_namespace)
    bus = Bus(channels)
    return State({
        "settings": settings,
        "engine": engine,
        "sessions": sessions,
        "webhooks": WebhookWorker(sessions, settings.webhook_poll_seconds, settings.webhook_backoff_seconds,
                                  private_allowed=settings.webhook_private_targets),
        "channels": channels,
        "bus": bus,
        "presence": make_presence(settings.broker_url, presence_announcer(bus, sessions)),
        "broker": broker,
        "streams": StreamRegistry(settings.streams_per_person, settings.sse_ping_seconds),
        "limiter": RedisRateLimiter(settings.broker_url) if settings.broker_url else RateLimiter(),
        # Typing notices are counted by each process alone: nothing is stored and nothing is at stake but an
        # indicator, and a Redis round trip per notice cost more than the notice (with 1,000 people typing, the
        # broker run's median delivery went from 8 to 36 ms; docs/performance.md §6). N processes: at most N
        # notices a person per 3 s reach the others, and Settings.typing_limit holds per process.
        "typing_limiter": RateLimiter(),
        "forget_stopping_hook": lambda: None,
    })


async def start(app: Litestar) -> None:
    """The app's start-up (Litestar calls it with the app): the process tuned, stream pings, presence and webhook
    deliveries running, and the streams told when the process starts to stop (app.web.stopping)."""
    state = app.state
    tune_process(state.settings.worker_threads)
    await state.streams.start()
    await state.presence.start()
    await state.webhooks.start()
    state.forget_stopping_hook = stopping.when_stopping(state.streams.drain)
    logging.getLogger("uvicorn.error").addFilter(CANCELLED_AT_SHUTDOWN)


async def stop(app: Litestar) -> None:
    """The app's shutdown (Litestar calls it with the app): sends still storing in worker threads (their requests
    cancelled by uvicorn) get up to FINISH_SENDS_SECONDS, then the background work stops and the engine is disposed."""
    state = app.state
    if not await to_thread.run_sync(stopping.wait_for_sends, stopping.FINISH_SENDS_SECONDS):
        log.warning("stopping with sends still in progress")
    state.forget_stopping_hook()
    logging.getLogger("uvicorn.error").removeFilter(CANCELLED_AT_SHUTDOWN)
    await state.webhooks.stop()
    await state.streams.stop()
    await state.presence.stop()
    state.engine.dispose()


def create_app(settings: Settings | None = None) -> Litestar:
    """The Litestar app for `settings` (Settings.from_env() when None): its parts in `app.state` (`app_state`); the
    routes, middleware, CSRF (except /api/v1), error handlers and the OpenAPI document of /api/v1. The background work
    (stream pings, presence, webhooks) starts with the app's startup and stops at its shutdown."""
    settings = settings or Settings.from_env()
    redact.install()
    state = app_state(settings)

    app = Litestar(
        route_handlers=[
            home,
            api_router,
            docs_redirect,
            redoc_redirect,
            ChatController,
            SearchController,
            InterventionController,
            OrdersPanelController,
            AdminController,
            AuthController,
            Router(path="/", route_handlers=[FilesController],
                   request_max_body_size=settings.max_upload_mb * 1024 * 1024 + bodies.UPLOAD_ENVELOPE),
            QuickRepliesController,
            SendQuickReplyController,
            ConsultingController,
            events,
            healthz,
            # URLs carry a hash of the file's content (templating.static_url): a changed file has a new URL
            create_static_files_router(path="/static", directories=[PACKAGE / "static"], include_in_schema=False,
                                       cache_control=CacheControlHeader(max_age=365 * 24 * 3600, immutable=True)),
        ],
        dependencies={"db": Provide(provide_db)},
        plugins=[state.channels],
        state=state,
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment())),
        request_max_body_size=bodies.DEFAULT,  # routes with more to carry (uploads) say so themselves
        csrf_config=CSRFConfig(secret=settings.secret_key, cookie_samesite="lax", cookie_httponly=True,
                               exclude=["/api/v1"]),  # the API authenticates with a Bearer key, not cookies
        middleware=[
            DefineMiddleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies)),
            DefineMiddleware(UntrustedForwardingWarning, trusted=settings.trusted_proxies),
            DefineMiddleware(SecurityHeadersMiddleware, frame_ancestors=settings.frame_ancestors),
            bodies.AnnouncedBodyLimit,
        ],
        request_class=KefuRequest,  # form fields that cannot be decoded: 400, not 500
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        before_request=set_locale,
        on_startup=[start],
        on_shutdown=[stop],
        debug=settings.debug,
        openapi_config=openapi_config(),
    )
    # every app this process builds has the same routes, so the one environment may ask the newest of them
    environment().globals["url_for"] = url_maker(app)
    return app
