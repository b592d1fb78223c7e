"""What the bot says, in Traditional Chinese (default) and English."""
from __future__ import annotations

LANGUAGES = ("zh-TW", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "zh-TW": {
        "greeting": "歡迎使用 Cutout Bot！📸 傳一張照片給我，我會用 AI 幫你去背（連髮絲都清楚），再讓你一鍵換背景。\n輸入「說明」看用法，輸入「English」切換英文。",
        "help": "用法：\n1. 傳一張照片（人像、寵物、商品都可以）\n2. 幾秒後收到去背 PNG 和下載連結\n3. 點下方按鈕換背景：白、黑、品牌色、模糊原圖、精選背景或只要遮罩\n輸入「English」切換英文。",
        "working": "收到照片，正在去背中…",
        "done": "去背完成！下載透明 PNG（{days} 天內有效）：\n{url}\n點下方按鈕換背景 👇",
        "composite_done": "換好背景了！下載（{days} 天內有效）：\n{url}",
        "mask_done": "遮罩（白色＝主體）下載（{days} 天內有效）：\n{url}",
        "no_subject": "這張照片裡找不到明顯的主體 🤔 換一張主體清楚的照片試試看？",
        "bad_image_corrupt": "這個檔案壞掉了或沒有傳完整，無法讀取 😢 請重新傳一次照片（JPEG、PNG、WebP 或 HEIC）。",
        "bad_image_unsupported": "這個檔案不是我看得懂的照片格式，無法讀取。請傳 JPEG、PNG、WebP 或 HEIC 照片。",
        "bad_image_empty": "收到的檔案是空的，請再傳一次照片 🙏",
        "too_many_pixels": "這張照片的像素太多了（上限 {limit}），請縮小後再傳。",
        "too_large": "照片太大了（{reason}），請傳小一點的照片。",
        "too_large_limit": "照片太大了（上限 {limit}），請傳小一點的照片。",
        "fetch_timeout": "下載照片花太久了，請再傳一次 🙏",
        "fetch_failed": "暫時拿不到你的照片，請再傳一次 🙏",
        "unsupported": "我只看得懂照片喔 🙂 請傳一張照片給我，或輸入「說明」。",
        "busy": "目前排隊的照片太多了，請過一分鐘再傳一次 🙏",
        "rate_limited": "照片傳太快了，請稍等一下再傳 🙏",
        "expired": "這張照片的結果已經過期了，請重新傳一次照片。",
        "failed": "處理時出了點問題，請再傳一次照片 🙏",
        "unknown_choice": "這個選項已失效，請重新傳一次照片。",
        "language_set": "已切換為繁體中文。",
        "fallback_text": "傳一張照片給我就能去背！輸入「說明」看用法。",
        "bg_white": "白色", "bg_black": "黑色", "bg_brand": "品牌色{n}", "bg_blur": "模糊原圖",
        "bg_studio": "攝影棚", "bg_sunset": "夕陽", "bg_mint": "薄荷", "bg_mask": "只要遮罩", "bg_cutout": "原始去背",
        "campaign_joined": "歡迎參加「{title}」！請傳一張自拍照，我會幫你做成活動專屬圖 📸\n（輸入「離開」可退出活動）",
        "campaign_done": "你的「{title}」活動圖完成了！下載（{days} 天內有效）：\n{url}\n想要原始去背圖請點「原始去背」。",
        "campaign_left": "已離開活動，之後傳的照片會直接去背。",
    },
    "en": {
        "greeting": "Welcome to Cutout Bot! 📸 Send me a photo and I'll remove the background with AI (hair included), then you can pick a new one with a tap.\nType 'help' for how it works, '中文' for Chinese.",
        "help": "How it works:\n1. Send a photo (people, pets, products)\n2. Get a transparent PNG and a download link in seconds\n3. Tap a button for a new background: white, black, brand colours, blurred original, a backdrop, or the mask only\nType '中文' for Chinese.",
        "working": "Got your photo, cutting it out…",
        "done": "Done! Download the transparent PNG (valid {days} days):\n{url}\nTap below for a new background 👇",
        "composite_done": "Here it is with the new background. Download (valid {days} days):\n{url}",
        "mask_done": "The mask (white = subject). Download (valid {days} days):\n{url}",
        "no_subject": "I couldn't find a clear subject in this photo 🤔 Try one where the subject stands out?",
        "bad_image_corrupt": "This file is damaged or arrived incomplete, so I can't read it 😢 Please send the photo again (JPEG, PNG, WebP or HEIC).",
        "bad_image_unsupported": "This file isn't a photo format I can read. Please send a JPEG, PNG, WebP or HEIC photo.",
        "bad_image_empty": "The file arrived empty. Please send the photo again 🙏",
        "too_many_pixels": "This photo has too many pixels (the limit is {limit}). Please send a smaller one.",
        "too_large": "That photo is too big ({reason}). Please send a smaller one.",
        "too_large_limit": "That photo is too big (the limit is {limit}). Please send a smaller one.",
        "fetch_timeout": "Downloading your photo took too long. Please send it again 🙏",
        "fetch_failed": "I couldn't get your photo just now. Please send it again 🙏",
        "unsupported": "I only understand photos 🙂 Send me a photo, or type 'help'.",
        "busy": "Too many photos are queued right now. Please send it again in a minute 🙏",
        "rate_limited": "You're sending photos very fast. Please wait a moment 🙏",
        "expired": "The result for that photo has expired. Please send the photo again.",
        "failed": "Something went wrong on our side. Please send the photo again 🙏",
        "unknown_choice": "That option has expired. Please send the photo again.",
        "language_set": "Switched to English.",
        "fallback_text": "Send me a photo to cut it out! Type 'help' for how it works.",
        "bg_white": "White", "bg_black": "Black", "bg_brand": "Brand {n}", "bg_blur": "Blurred photo",
        "bg_studio": "Studio", "bg_sunset": "Sunset", "bg_mint": "Mint", "bg_mask": "Mask only", "bg_cutout": "Plain cutout",
        "campaign_joined": "Welcome to \"{title}\"! Send a selfie and I'll turn it into the campaign picture 📸\n(Type 'exit' to leave.)",
        "campaign_done": "Your \"{title}\" picture is ready! Download (valid {days} days):\n{url}\nTap 'Plain cutout' for the transparent PNG.",
        "campaign_left": "You left the campaign; photos are cut out as usual again.",
    },
}

EXIT_WORDS = {"exit", "leave", "quit", "離開", "离开", "退出", "結束"}
HELP_WORDS = {"help", "說明", "说明", "幫助", "帮助", "?", "？", "menu", "選單"}
LANGUAGE_WORDS = {"english": "en", "en": "en", "中文": "zh-TW", "繁體中文": "zh-TW", "zh": "zh-TW", "zh-tw": "zh-TW"}


def say(language: str, key: str, **values: object) -> str:
    table = MESSAGES.get(language) or MESSAGES["zh-TW"]
    return table[key].format(**values)
