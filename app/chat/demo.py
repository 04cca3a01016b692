"""The demo people of the contract, and optional load-test people."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.chat import quick_replies
from app.chat.people import upsert_user
from app.db.models import User

DEMO_PEOPLE = (
    ("b1", "保安堂药房", "buyer", "连锁药房，采购常用药品与保健品。"),
    ("b2", "异世界药局", "buyer", "社区药局，关注进口药与处方药。"),
    ("m1", "保和堂医药集团", "merchant", "医药批发商，中成药与西药现货供应。"),
    ("m2", "阿纳斯蒂制药", "merchant", "原料药与制剂生产企业。"),
    ("m3", "梅迪西斯制药", "merchant", "专科药与医疗器械。"),
    ("p1", "官方客服", "support", "平台官方客服，处理订单、售后与投诉。"),
)


DEMO_QUICK_REPLIES = {
    "merchant": (
        "您好，欢迎光临！请问需要什么药品？",
        "现货充足，今天下单明天发货。",
        "可以开增值税专用发票，下单时请备注开票信息。",
    ),
    "support": (
        "您好，这里是平台官方客服，请问有什么可以帮您？",
        "请提供订单号，我马上为您查询。",
        "已为您登记，处理结果会在 24 小时内通知您。",
    ),
}


def seed_demo(session: Session, load_users: int = 0) -> int:
    """Create or refresh the demo people (idempotent). Returns how many people were written."""
    count = 0
    for user_id, name, role, description in DEMO_PEOPLE:
        user = upsert_user(session, user_id, name, role)
        user.description = description
        count += 1
    for user_id, _name, role, _description in DEMO_PEOPLE:
        owner = session.get(User, user_id)
        if role in DEMO_QUICK_REPLIES and owner is not None and not quick_replies.list_replies(session, owner):
            for body in DEMO_QUICK_REPLIES[role]:
                quick_replies.create(session, owner, body)
    for n in range(1, load_users + 1):
        upsert_user(session, f"lb{n}", f"压测买家{n}", "buyer")
        upsert_user(session, f"lm{n}", f"压测商家{n}", "merchant")
        count += 2
    session.flush()
    return count
