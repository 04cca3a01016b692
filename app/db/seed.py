"""The demo people of the contract, and optional load-test people."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.chat.people import upsert_user

DEMO_PEOPLE = (
    ("b1", "保安堂药房", "buyer", "连锁药房，采购常用药品与保健品。"),
    ("b2", "异世界药局", "buyer", "社区药局，关注进口药与处方药。"),
    ("m1", "保和堂医药集团", "merchant", "医药批发商，中成药与西药现货供应。"),
    ("m2", "阿纳斯蒂制药", "merchant", "原料药与制剂生产企业。"),
    ("m3", "梅迪西斯制药", "merchant", "专科药与医疗器械。"),
    ("p1", "官方客服", "support", "平台官方客服，处理订单、售后与投诉。"),
)


def seed_demo(session: Session, load_users: int = 0) -> int:
    """Create or refresh the demo people (idempotent). Returns how many people were written."""
    count = 0
    for user_id, name, role, description in DEMO_PEOPLE:
        user = upsert_user(session, user_id, name, role)
        user.description = description
        count += 1
    for n in range(1, load_users + 1):
        upsert_user(session, f"lb{n}", f"压测买家{n}", "buyer")
        upsert_user(session, f"lm{n}", f"压测商家{n}", "merchant")
        count += 2
    session.flush()
    return count
