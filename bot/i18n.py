"""What the bot says, in Traditional Chinese (default) and English.

Every text a user sees is wholly in their language (brand and format names like LINE, PNG, JPEG,
HEIC and the unit MB aside), and every error says what to do next. No URL is ever put in a text:
links sit behind card buttons (bot/replies.Card).
"""
from __future__ import annotations

LANGUAGES = ("zh-TW", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "zh-TW": {
        "greeting": "歡迎使用 Cutout Bot！📸 傳一張照片給我，我會用 AI 幫你去背（連髮絲都清楚），再讓你一鍵換背景。\n輸入「說明」看用法，輸入「English」切換英文。",
        "help": "用法：\n1. 傳一張照片（人像、寵物、商品都可以）\n2. 幾秒後收到去背結果，點「下載」存下透明背景的 PNG\n3. 點「換背景」或下方的按鈕：白底、背景模糊、品牌色、黑底、精選背景，或給設計師的黑白遮罩\n輸入「English」切換英文。",
        "working": "收到照片，正在去背中…",
        # Result cards (bot/channels/cards.py): titles and subtitles stay under 40 characters.
        "card_done_title": "去背完成！",
        "card_done_subtitle": "透明背景 PNG，{days} 天內可以下載",
        "card_done_alt": "去背完成！打開聊天室下載透明背景 PNG",
        "card_composite_title": "換好背景了：{background}",
        "card_composite_subtitle": "{days} 天內可以下載",
        "card_mask_title": "黑白遮罩完成",
        "card_mask_subtitle": "白色是主體、黑色是背景，{days} 天內可以下載",
        "card_campaign_title": "「{title}」活動圖完成！",
        "card_campaign_subtitle": "{days} 天內可以下載；要透明去背圖請點「原始去背」",
        "card_more_title": "更多功能",
        "card_more_subtitle": "給設計師的黑白遮罩、透明去背原檔和使用說明",
        "btn_download": "下載", "btn_backgrounds": "換背景", "btn_more": "更多",
        "btn_mask": "黑白遮罩（給設計師）", "btn_transparent": "透明去背原檔", "btn_help": "使用說明",
        "backgrounds_prompt": "選一個新背景 👇（按鈕可以左右滑動）",
        # Errors: what happened, then what to do.
        "no_subject": "這張照片裡找不到明顯的主體 🤔 請換一張主體清楚、和背景分得開的照片（人物、寵物或商品都可以）。",
        "bad_image_corrupt": "這個檔案壞掉了或沒有傳完整，無法讀取 😢 請重新傳一次照片（JPEG、PNG、WebP 或 HEIC）。",
        "bad_image_unsupported": "這個檔案不是我看得懂的照片格式，無法讀取。請傳 JPEG、PNG、WebP 或 HEIC 照片。",
        "bad_image_empty": "收到的檔案是空的，請再傳一次照片 🙏",
        "too_many_pixels": "這張照片的像素太多了（上限 {wan} 萬像素），請先縮小或裁切後再傳。",
        "too_large_limit": "照片太大了（上限 {limit}），請先縮小後再傳。",
        "fetch_timeout": "下載照片花太久了，請再傳一次 🙏",
        "fetch_failed": "暫時拿不到你的照片，請再傳一次 🙏",
        "unsupported": "我只看得懂照片喔 🙂 請傳一張照片給我，或輸入「說明」看用法。",
        "busy": "目前排隊的照片太多了，請過一分鐘再傳一次 🙏",
        "rate_limited": "照片傳太快了 🙏 請等一分鐘再傳下一張。",
        "expired": "這張照片的結果已經過期了，請重新傳一次照片。",
        "failed": "處理時出了點問題，請再傳一次照片 🙏 如果還是不行，換一張照片試試看。",
        "unknown_choice": "這個按鈕已經失效了，請重新傳一次照片，再從新的按鈕選。",
        "language_set": "已切換為繁體中文。",
        "fallback_text": "傳一張照片給我就能去背！輸入「說明」看用法。",
        # Background buttons (<= 20 characters): words customers use.
        "bg_white": "白底", "bg_black": "黑底", "bg_blur": "背景模糊", "bg_studio": "攝影棚灰", "bg_sunset": "夕陽漸層",
        "bg_mint": "薄荷綠", "bg_mask": "黑白遮罩（給設計師）", "bg_cutout": "原始去背",
        "bg_brand": "品牌{colour}", "bg_brand_plain": "品牌色",
        "colour_red": "紅", "colour_orange": "橘", "colour_yellow": "黃", "colour_green": "綠", "colour_teal": "青",
        "colour_blue": "藍", "colour_purple": "紫", "colour_pink": "粉紅", "colour_white": "白", "colour_black": "黑",
        "colour_grey": "灰",
        "campaign_joined": "歡迎參加「{title}」！請傳一張自拍照，我會幫你做成活動專屬圖 📸\n（輸入「離開」可退出活動）",
        "campaign_left": "已離開活動，之後傳的照片會直接去背。",
    },
    "en": {
        "greeting": "Welcome to Cutout Bot! 📸 Send me a photo and I'll remove the background with AI (hair included), then you can pick a new one with a tap.\nType 'help' for how it works, '中文' for Chinese.",
        "help": "How it works:\n1. Send a photo (people, pets, products)\n2. In seconds you get the cutout: tap 'Download' to save the transparent PNG\n3. Tap 'New background' or a button below: white, blurred, brand colours, black, a backdrop, or a black-and-white mask for designers\nType '中文' for Chinese.",
        "working": "Got your photo, cutting it out…",
        "card_done_title": "Your cutout is ready!",
        "card_done_subtitle": "Transparent PNG, download within {days} days",
        "card_done_alt": "Your cutout is ready! Open the chat to download the transparent PNG",
        "card_composite_title": "New background: {background}",
        "card_composite_subtitle": "Download within {days} days",
        "card_mask_title": "Your black-and-white mask",
        "card_mask_subtitle": "White is the subject, black the background. Download within {days} days",
        "card_campaign_title": "Your \"{title}\" picture is ready!",
        "card_campaign_subtitle": "Download within {days} days. Tap 'Plain cutout' for the transparent PNG",
        "card_more_title": "More options",
        "card_more_subtitle": "A mask for designers, the full transparent PNG, and how it works",
        "btn_download": "Download", "btn_backgrounds": "New background", "btn_more": "More",
        "btn_mask": "Mask (for designers)", "btn_transparent": "Transparent PNG", "btn_help": "How it works",
        "backgrounds_prompt": "Pick a new background 👇 (swipe the buttons for more)",
        "no_subject": "I couldn't find a clear subject in this photo 🤔 Please try one where the person, pet or product stands out from the background.",
        "bad_image_corrupt": "This file is damaged or arrived incomplete, so I can't read it 😢 Please send the photo again (JPEG, PNG, WebP or HEIC).",
        "bad_image_unsupported": "This file isn't a photo format I can read. Please send a JPEG, PNG, WebP or HEIC photo.",
        "bad_image_empty": "The file arrived empty. Please send the photo again 🙏",
        "too_many_pixels": "This photo has too many pixels (the limit is {mp} megapixels). Please shrink or crop it and send it again.",
        "too_large_limit": "That photo is too big (the limit is {limit}). Please shrink it and send it again.",
        "fetch_timeout": "Downloading your photo took too long. Please send it again 🙏",
        "fetch_failed": "I couldn't get your photo just now. Please send it again 🙏",
        "unsupported": "I only understand photos 🙂 Send me a photo, or type 'help' for how it works.",
        "busy": "Too many photos are queued right now. Please send it again in a minute 🙏",
        "rate_limited": "You're sending photos very fast 🙏 Please wait a minute before the next one.",
        "expired": "The result for that photo has expired. Please send the photo again.",
        "failed": "Something went wrong on our side. Please send the photo again 🙏 If it keeps failing, try another photo.",
        "unknown_choice": "That button has expired. Please send the photo again and pick from the new buttons.",
        "language_set": "Switched to English.",
        "fallback_text": "Send me a photo to cut it out! Type 'help' for how it works.",
        "bg_white": "White", "bg_black": "Black", "bg_blur": "Blurred background", "bg_studio": "Studio grey",
        "bg_sunset": "Sunset", "bg_mint": "Mint green", "bg_mask": "Mask (for designers)", "bg_cutout": "Plain cutout",
        "bg_brand": "Brand {colour}", "bg_brand_plain": "Brand colour",
        "colour_red": "red", "colour_orange": "orange", "colour_yellow": "yellow", "colour_green": "green",
        "colour_teal": "teal", "colour_blue": "blue", "colour_purple": "purple", "colour_pink": "pink",
        "colour_white": "white", "colour_black": "black", "colour_grey": "grey",
        "campaign_joined": "Welcome to \"{title}\"! Send a selfie and I'll turn it into the campaign picture 📸\n(Type 'exit' to leave.)",
        "campaign_left": "You left the campaign; photos are cut out as usual again.",
    },
}

EXIT_WORDS = {"exit", "leave", "quit", "離開", "离开", "退出", "結束"}
HELP_WORDS = {"help", "說明", "说明", "幫助", "帮助", "?", "？", "menu", "選單", "使用說明", "how it works"}
LANGUAGE_WORDS = {"english": "en", "en": "en", "中文": "zh-TW", "繁體中文": "zh-TW", "zh": "zh-TW", "zh-tw": "zh-TW"}

# Errors the conversation may tell a user (UserFacingError keys): tests hold each to its language.
ERROR_KEYS = ("no_subject", "bad_image_corrupt", "bad_image_unsupported", "bad_image_empty", "too_many_pixels",
              "too_large_limit", "fetch_timeout", "fetch_failed", "unsupported", "busy", "rate_limited",
              "expired", "failed", "unknown_choice")


def say(language: str, key: str, **values: object) -> str:
    table = MESSAGES.get(language) or MESSAGES["zh-TW"]
    return table[key].format(**values)
