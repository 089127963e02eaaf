"""pacs"""
